"""The architecture diagram follows the synthesized stack: one host, or the balancer, the group and
the bucket when they exist."""

from __future__ import annotations

import re
from typing import Any

from orthweb_dev import diagram


def _nodes(dot: str) -> set[str]:
    return set(re.findall(r'^\s+"(aws_[a-z0-9_]+)\.[^"]+" \[label=', dot, flags=re.M))


def test_one_host_is_what_users_reach(synth: dict[str, Any]) -> None:
    dot = diagram.dot(synth)
    assert 'users -> "aws_instance.orthweb"' in dot
    assert not {"aws_lb", "aws_autoscaling_group"} & _nodes(dot)
    assert "S3 image bucket" not in dot
    # The one bucket is the host files': the host reads its bundle there at first boot.
    assert re.search(
        r'"aws_instance\.orthweb" -> "aws_s3_bucket\.[^"]+" \[style=dashed, label="files, first boot"', dot
    )


def test_several_hosts_are_reached_through_the_balancer_and_keep_images_in_the_bucket(scaled: dict[str, Any]) -> None:
    dot = diagram.dot(scaled)
    assert {"aws_lb", "aws_autoscaling_group", "aws_s3_bucket"} <= _nodes(dot)
    assert "aws_instance" not in _nodes(dot)
    (lb,) = re.findall(r'users -> "(aws_lb\.[^"]+)"', dot)
    (group,) = re.findall(rf'"{re.escape(lb)}" -> "(aws_autoscaling_group\.[^"]+)"', dot)
    assert re.search(rf'"{re.escape(group)}" -> "aws_s3_bucket\.[^"]+" \[style=dashed, label="images"', dot)
    assert "3 hosts" in dot
    assert "Shared TLS certificate" in dot
