"""The testbed features that evaluate flags (see conftest.py for what is left
out by tag); named as the flagd provider's packages name theirs."""
from pytest_bdd import scenarios
from tests.e2e.paths import TEST_HARNESS_PATH

scenarios(
    *(
        f"{TEST_HARNESS_PATH}/gherkin/{name}.feature"
        for name in ("evaluation", "targeting", "disabled", "contextEnrichment", "metadata")
    )
)
