"""The suite's tiers (tests/conftest.py): tests on the session Ray are marked `ray` by
themselves, modules run in tier order (no Ray, session Ray, clusters of their own), and a
test without a marker that starts Ray fails, naming the marker it needs. Run on small suites
of their own in a subprocess, with the real conftest."""

from pathlib import Path

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()
INI = "[pytest]\naddopts = -p no:cacheprovider\nmarkers =\n    ray: x\n    cluster: x\n    slow: x\n"


def _suite(pytester, **files):
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    pytester.makepyfile(**files)


def test_tests_on_the_session_ray_are_marked_and_modules_run_in_tier_order(pytester):
    _suite(pytester,
           test_a_cluster="import pytest\npytestmark = pytest.mark.cluster\n"
                          "def test_own_head():\n    pass\n",
           test_b_ray="import pytest\n@pytest.fixture(scope='module')\n"
                      "def trained(ray_session):\n    return 1\n"
                      "def test_through_a_fixture(trained):\n    pass\n"
                      "def test_plain_in_a_ray_module():\n    pass\n",
           test_c_plain="def test_plain():\n    pass\n")
    res = pytester.runpytest_subprocess("--collect-only", "-q")
    ids = [ln for ln in res.outlines if "::" in ln]
    assert ids == ["test_c_plain.py::test_plain", "test_b_ray.py::test_through_a_fixture",
                   "test_b_ray.py::test_plain_in_a_ray_module", "test_a_cluster.py::test_own_head"]
    res = pytester.runpytest_subprocess("--collect-only", "-q", "-m", "ray")
    assert [ln for ln in res.outlines if "::" in ln] == ["test_b_ray.py::test_through_a_fixture"]
    res = pytester.runpytest_subprocess("--collect-only", "-q", "-m", "not ray and not cluster")
    assert [ln for ln in res.outlines if "::" in ln] == [
        "test_c_plain.py::test_plain", "test_b_ray.py::test_plain_in_a_ray_module"]


def test_an_unmarked_test_that_starts_ray_fails_and_says_which_marker(pytester):
    # a stand-in for Ray that says it is running, so that nothing really starts
    _suite(pytester, test_starts="import sys, types\n"
                                 "def test_starts_ray():\n"
                                 "    ray = types.ModuleType('ray')\n"
                                 "    ray.is_initialized = lambda: True\n"
                                 "    ray.shutdown = lambda: None\n"
                                 "    sys.modules['ray'] = ray\n")
    res = pytester.runpytest_subprocess()
    res.assert_outcomes(passed=1, errors=1)
    res.stdout.fnmatch_lines(["*this test started Ray in its process but is not marked: use "
                              "the ray_session fixture (marks it `ray`) or mark it `cluster`*"])
