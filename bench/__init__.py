"""bench: the auto-approve path (model.submitted -> deployment.succeeded) against a bare aiokafka relay.

`python -m bench.run` (or `make bench`) starts its own broker, the four services and three relay
processes, and prints latency and throughput side by side. Topic names of the relay live here.
"""

RELAY_SUBMITTED = "bench.submitted"
RELAY_CHECKS = "bench.checks"
RELAY_DECIDED = "bench.decided"
RELAY_DEPLOYED = "bench.deployed"

# The three hops of the relay, in the order of the services they stand for.
RELAY_HOPS = (
    ("validator", RELAY_SUBMITTED, RELAY_CHECKS),
    ("policy", RELAY_CHECKS, RELAY_DECIDED),
    ("deployer", RELAY_DECIDED, RELAY_DEPLOYED),
)
RELAY_TOPICS = (RELAY_SUBMITTED, RELAY_CHECKS, RELAY_DECIDED, RELAY_DEPLOYED)
