#!/usr/bin/env python3
"""Signs one request with botocore's SigV4Auth and prints the Authorization header.

Reads JSON on stdin: {method, url, headers: [[k, v]...], body, access_key, secret_key,
session_token, region, service, timestamp: "YYYYMMDDTHHMMSSZ"}. Used by qrt's SigV4 unit test
to compare its signer with the reference one for identical requests.
"""
import datetime
import json
import sys
from unittest import mock

import botocore.auth
import botocore.awsrequest
import botocore.credentials

spec = json.load(sys.stdin)
creds = botocore.credentials.Credentials(
    spec["access_key"], spec["secret_key"], spec.get("session_token") or None
)
request = botocore.awsrequest.AWSRequest(
    method=spec["method"], url=spec["url"], headers=dict(spec["headers"]),
    data=spec["body"].encode("utf-8"),
)
now = datetime.datetime.strptime(spec["timestamp"], "%Y%m%dT%H%M%SZ")
signer = botocore.auth.SigV4Auth(creds, spec["service"], spec["region"])
if hasattr(botocore.auth, "get_current_datetime"):  # botocore >= 1.31
    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        signer.add_auth(request)
else:  # Debian 12's 1.29 reads datetime.datetime.utcnow()

    class FixedDatetime(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return now

    with mock.patch.object(botocore.auth.datetime, "datetime", FixedDatetime):
        signer.add_auth(request)
print(request.headers["Authorization"])
