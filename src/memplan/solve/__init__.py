"""CP-SAT planner: one model for fusion, tiling, residency, filter keep/reload and offsets."""

from memplan.solve.model import UserConstraints
from memplan.solve.run import OBJECTIVES, SolveResult, SolverStats, parse_weights, solve_cpsat

__all__ = ["OBJECTIVES", "SolveResult", "SolverStats", "UserConstraints", "parse_weights", "solve_cpsat"]
