"""The §5 evaluation: scenarios, open-loop load, static vs adaptive vs baselines, reports."""
