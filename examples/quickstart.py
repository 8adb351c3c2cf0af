"""Log an experiment, a run, params and metrics; then `trackline runs show <run_id>`."""

import math

import trackline

trackline.set_tracking_uri("localhost:50051")
trackline.set_experiment("quickstart")
with trackline.start_run(run_name="first") as run:
    trackline.log_params({"lr": 0.01, "optimizer": "adam"})
    trackline.set_tag("team", "vision")
    for step in range(100):
        trackline.log_metric("loss", math.exp(-step / 30), step=step)
print(f"logged run {run.run_id}; see it with: trackline runs show {run.run_id}")
