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
with mock.patch("botocore.auth.get_current_datetime", return_value=now):
    botocore.auth.SigV4Auth(creds, spec["service"], spec["region"]).add_auth(request)
print(request.headers["Authorization"])
