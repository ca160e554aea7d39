"""Pet-door automation: open the door for allowed animals seen by a camera."""

from __future__ import annotations

from clients.petdoor.door import PetDoor
from clients.petdoor.logic import Decision, DoorLogic
from clients.petdoor.policy import Policy, PolicyError, load_policy

__all__ = ["Decision", "DoorLogic", "PetDoor", "Policy", "PolicyError", "load_policy"]
