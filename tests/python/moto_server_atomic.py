"""moto_server with DynamoDB's per-item atomicity, for tailrace's tests.

moto_server answers requests on several threads, and its DynamoDB backend
evaluates a ConditionExpression and then writes, with nothing between the
two. Two concurrent conditional writes to one item can therefore both
succeed: 4 items in 200 had two winners when four clients raced
(`attribute_not_exists(id)`), where DynamoDB grants exactly one. tailrace's
exactly-once claims rest on that guarantee, so a test of two consumers
racing on one stream double-counted once in CI against plain moto_server.

The same holds for S3's conditional PutObject: moto checks `If-Match` /
`If-None-Match` against the stored ETag and then writes, so two writers that
read the same ETag can both pass the check and the second silently replaces
the first. S3 decides such races atomically (one gets 412), and the
inventory updater (inventory/) rests on that, so PutObject is serialized too.

This launcher serializes the DynamoDB backend's item operations and S3's
PutObject with one lock (what the services guarantee per item or key, made
coarser), then runs moto's own server entry point with the same arguments.
Nothing else changes: other services keep moto's threads, so SQS long polls
still do not block.
"""

import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.s3.responses import S3Response
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

# Check-and-write of a (conditional) PutObject, as one step.
S3Response.put_object = _serialized(S3Response.put_object)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
