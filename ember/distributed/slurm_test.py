import pytest

from ember.distributed.slurm import expand_hostlist, rendezvous_port


@pytest.mark.parametrize("hostlist, hosts", [
    ("localhost", ["localhost"]),
    ("node[01-04,07]", ["node01", "node02", "node03", "node04", "node07"]),
    ("gpu-a[1-2],gpu-b3", ["gpu-a1", "gpu-a2", "gpu-b3"]),
    ("n[8-11]", ["n8", "n9", "n10", "n11"]),  # unpadded: the width grows
    ("n[098-101]", ["n098", "n099", "n100", "n101"]),
    ("rack[1-2]-node[01-02]", ["rack1-node01", "rack1-node02", "rack2-node01", "rack2-node02"]),
    ("a[1],b,c[3-4]x", ["a1", "b", "c3x", "c4x"]),
])
def test_a_slurm_host_list_expands_in_order_with_its_padding(hostlist, hosts):
    assert expand_hostlist(hostlist) == hosts


@pytest.mark.parametrize("hostlist", ["node[1-2", "node]1", "node[[1]]", "node[]", "node[a-b]", "node[3-1]",
                                      "node[1-]", "a,,b", ""])
def test_a_malformed_host_list_is_refused_by_name(hostlist):
    with pytest.raises(ValueError, match="Slurm host list"):
        expand_hostlist(hostlist)


def test_the_rendezvous_port_comes_from_the_job_id_below_the_ephemeral_ports():
    assert rendezvous_port(4242) == 14242
    assert rendezvous_port(123456) == 10000 + 123456 % 20000
    assert all(10000 <= rendezvous_port(job) < 30000 for job in range(0, 100000, 997))
