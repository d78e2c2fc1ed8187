"""Events the matching service raises."""
