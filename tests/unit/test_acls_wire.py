"""The ACL adapter's wire mapping (infra.kafka.acl_admin): Kafka's enum codes both ways, and
the requests it builds are the v1 structs Kafka 4 still answers."""

from __future__ import annotations

import pytest
from aiokafka.protocol.admin import CreateAclsRequest_v1, DeleteAclsRequest_v1

from infra.kafka import acl_admin
from infra.policy.acls import AclBinding

TOPIC_WRITE = AclBinding("User:orders", "TOPIC", "orders.events", "LITERAL", "WRITE")
GROUP_PREFIX = AclBinding("User:audit", "GROUP", "audit:", "PREFIXED", "READ")


def test_a_describe_answer_reads_back_as_bindings() -> None:
    answer = {"error_code": 0, "error_message": None, "resources": [
        {"resource_type": 2, "resource_name": "orders.events", "resource_pattern_type": 3,
         "acls": [{"principal": "User:orders", "host": "*", "operation": 4,
                   "permission_type": 3}]},
        {"resource_type": 3, "resource_name": "audit:", "resource_pattern_type": 4,
         "acls": [{"principal": "User:audit", "host": "*", "operation": 3,
                   "permission_type": 3},
                  {"principal": "User:x", "host": "10.0.0.1", "operation": 99,
                   "permission_type": 2}]},
    ]}
    assert acl_admin.bindings_from_describe(answer) == [
        TOPIC_WRITE, GROUP_PREFIX,
        AclBinding("User:x", "GROUP", "audit:", "PREFIXED", "UNKNOWN(99)", "DENY", "10.0.0.1"),
    ]


def test_create_and_delete_send_every_binding_in_one_v1_request() -> None:
    versions = {30: (1, 3), 31: (1, 3)}  # Kafka 4.1: v0 is gone
    create = acl_admin._Create([TOPIC_WRITE, GROUP_PREFIX]).prepare(versions)
    assert isinstance(create, CreateAclsRequest_v1)
    assert create.creations == [(2, "orders.events", 3, "User:orders", "*", 4, 3),
                                (3, "audit:", 4, "User:audit", "*", 3, 3)]
    delete = acl_admin._Delete([GROUP_PREFIX]).prepare(versions)
    assert isinstance(delete, DeleteAclsRequest_v1)
    assert delete.filters == [(3, "audit:", 4, "User:audit", "*", 3, 3)]


def test_a_name_kafka_does_not_know_is_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="no 'WRITES'"):
        acl_admin._wire(AclBinding("User:a", "TOPIC", "t", "LITERAL", "WRITES"))


def test_refusals_are_one_line_each() -> None:
    assert isinstance(acl_admin._refusal("describe ACLs", 54, None, "h:1"), acl_admin.NoAuthorizer)
    denied = acl_admin._refusal("create the ACL x", 31, "denied", "h:1")
    assert str(denied) == ("Kafka refused to create the ACL x: ClusterAuthorizationFailedError: "
                           "denied; connect as a super user or a principal with ALTER and "
                           "DESCRIBE on the cluster")
