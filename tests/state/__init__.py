"""Tests of batchflow.state: the run state file, task journal, run lock and secret guard."""
