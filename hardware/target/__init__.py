"""The chips: Target and boards from the JSON files beside this module, and Loihi 2's fixed-point formats."""
