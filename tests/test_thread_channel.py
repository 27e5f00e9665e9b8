"""The threads runtime's in-process channel keeps the contract of Lava's shared-memory channel."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("lava")

from lava.magma.compiler.channels.pypychannel import CspRecvPort, CspSelector, CspSendPort, PyPyChannel  # noqa: E402
from lava.magma.runtime.message_infrastructure.multiprocessing import MultiProcessing  # noqa: E402

from lensnet_deploy.hardware.lava.runtime.channel import ThreadChannel  # noqa: E402


def _pair(channel_class, infra, shape, dtype, size):
    channel = channel_class(infra, "src", "dst", shape, dtype, size)
    channel.src_port.start()
    channel.dst_port.start()
    return channel


@pytest.fixture(scope="module")
def lavas_infrastructure():
    infra = MultiProcessing()
    infra.start()
    yield infra
    infra.stop()


def test_messages_arrive_in_order_cast_as_lavas_channel_casts_them(lavas_infrastructure):
    rng = np.random.default_rng(0)
    messages = [rng.integers(-70_000, 70_000, size=(3, 5)) for _ in range(4)]
    messages.append(rng.normal(0, 300, size=(3, 5)))  # floats: truncated, as an assignment into Lava's buffer
    for dtype in (np.int8, np.int16, np.int32):
        got = {}
        for cls, infra in ((PyPyChannel, lavas_infrastructure), (ThreadChannel, None)):
            channel = _pair(cls, infra, (3, 5), dtype, 2)
            received = []
            for m in messages:
                channel.src_port.send(m)
                received.append(channel.dst_port.recv())
            channel.src_port.join()
            channel.dst_port.join()
            got[cls] = received
        for ours, lavas in zip(got[ThreadChannel], got[PyPyChannel]):
            assert ours.dtype == lavas.dtype == dtype
            assert np.array_equal(ours, lavas)
        assert np.array_equal(got[ThreadChannel][0], messages[0]) == (dtype == np.int32)  # narrower ones wrap


def test_ports_are_lavas_port_classes_and_reject_a_wrong_shape():
    channel = _pair(ThreadChannel, None, (4,), np.int32, 1)
    assert isinstance(channel.src_port, CspSendPort) and isinstance(channel.dst_port, CspRecvPort)
    assert (channel.src_port.shape, channel.src_port.d_type, channel.dst_port.size) == ((4,), np.int32, 1)
    with pytest.raises(AssertionError, match="Mismatch"):
        channel.src_port.send(np.zeros(5, dtype=np.int32))


def test_the_receiver_owns_its_copy_and_peek_does_not_consume():
    channel = _pair(ThreadChannel, None, (3,), np.int32, 2)
    data = np.array([1, 2, 3])
    channel.src_port.send(data)
    data[:] = 9  # a model reusing its array after sending
    peeked = channel.dst_port.peek()
    peeked[:] = 7
    assert channel.dst_port.probe()
    got = channel.dst_port.recv()
    assert got.tolist() == [1, 2, 3]
    assert not channel.dst_port.probe()


def test_a_full_channel_blocks_the_sender_and_an_empty_one_the_receiver():
    channel = _pair(ThreadChannel, None, (1,), np.int32, 1)
    channel.src_port.send(np.array([1]))
    assert not channel.src_port.probe()
    done = threading.Event()

    def second_send():
        channel.src_port.send(np.array([2]))
        done.set()

    threading.Thread(target=second_send, daemon=True).start()
    assert not done.wait(0.2)  # blocked: one slot, still full
    assert channel.dst_port.recv().tolist() == [1]
    assert done.wait(5)
    assert channel.dst_port.recv().tolist() == [2]

    got = []
    reader = threading.Thread(target=lambda: got.append(channel.dst_port.recv()), daemon=True)
    reader.start()
    time.sleep(0.2)
    assert not got  # blocked: empty
    channel.src_port.send(np.array([3]))
    reader.join(5)
    assert [g.tolist() for g in got] == [[3]]


def test_lavas_selector_wakes_on_the_channel_that_became_ready():
    a = _pair(ThreadChannel, None, (1,), np.int32, 1)
    b = _pair(ThreadChannel, None, (1,), np.int32, 1)
    result = []
    selector = CspSelector()
    waiter = threading.Thread(
        target=lambda: result.append(selector.select((a.dst_port, lambda: "a"), (b.dst_port, lambda: "b"))),
        daemon=True,
    )
    waiter.start()
    time.sleep(0.2)
    assert not result
    b.src_port.send(np.array([5]))
    waiter.join(5)
    assert result == ["b"]
    assert a.dst_port.observer is None and b.dst_port.observer is None
