"""moto_server with DynamoDB's per-item atomicity, for tailrace's tests.

moto_server answers requests on several threads, and its DynamoDB backend
evaluates a ConditionExpression and then writes, with nothing between the
two. Two concurrent conditional writes to one item can therefore both
succeed: 4 items in 200 had two winners when four clients raced
(`attribute_not_exists(id)`), where DynamoDB grants exactly one. tailrace's
exactly-once claims rest on that guarantee, so a test of two consumers
racing on one stream double-counted once in CI against plain moto_server.

This launcher serializes the DynamoDB backend's item operations with one
lock (what DynamoDB guarantees per item, made coarser), then runs moto's own
server entry point with the same arguments. Nothing else changes: other
services keep moto's threads, so SQS long polls still do not block.
"""

import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_ITEM_OPERATIONS = (
    "get_item",
    "put_item",
    "update_item",
    "delete_item",
    "transact_write_items",
    "execute_statement",
    "execute_transaction",
    "batch_execute_statement",
)
_LOCK = threading.RLock()


def _serialized(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _LOCK:
            return method(*args, **kwargs)

    return wrapper


for _name in _ITEM_OPERATIONS:
    setattr(DynamoDBBackend, _name, _serialized(getattr(DynamoDBBackend, _name)))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
