"""Placement: decisions + cluster snapshot + topology → PlacementPlan (pure)."""
