"""roles/apt_packages as the base role uses it (apt_packages_present: [chrony]).

That a converged node costs apt nothing is proven by the idempotence step (no change)
and by tests/integration/test_apt_cache.py; here: the package dpkg reports and the
query the role relies on.
"""

HOST = "gpufleet-mol-base-default"
testinfra_hosts = [f"podman://{HOST}"]
ON_FAILURE = ["apt-cache policy chrony", "tail -n 30 /var/log/apt/history.log"]


def test_present_package_installed_and_not_held(host):
    out = host.check_output("dpkg-query --show --showformat='${db:Status-Abbrev}' chrony")
    assert out.strip() == "ii", out


def test_query_of_an_unknown_name_is_not_an_error_for_the_role(host):
    # The role accepts rc 1 (a name dpkg never saw: simply not installed) and nothing else.
    result = host.run(
        "dpkg-query --show --showformat='${db:Status-Abbrev}${Package}\\n' -- "
        "gpufleet-no-such-package"
    )
    assert result.rc == 1, result.stderr
    assert "no packages found matching gpufleet-no-such-package" in result.stderr
