"""The Loihi 2 network as data: typed process specs, the lowering table, timing, the design-rule
audit, resources, placement and energy. No Lava import."""
