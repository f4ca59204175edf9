"""The data tests' shared fixtures."""

import pytest


@pytest.fixture(scope="package")
def ray_local():
    """One local Ray cluster (2 CPUs) for the Ray Data tests of this package: its start and Ray Data's first
    execution in it cost about 20 s on 2 cores, paid once rather than per module."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
