"""Events the training service raises."""
