"""The heterogeneous P/D cluster simulator: request-level and fluid fidelities behind one interface."""
