"""Signs raw requests with botocore's own SigV4 signer, for protocol corner cases
that a high-level client would never send."""

import datetime
import hashlib
from unittest import mock

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"
FORM = "application/x-www-form-urlencoded; charset=utf-8"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sign(url, body=b"", headers=None, keys=None, service="sts", region=REGION, at=None, method="POST"):
    """Returns the headers of a SigV4-signed request; `at` fakes the signing time."""
    access_key, secret, *token = keys
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": FORM, **(headers or {})})
    signer = botocore.auth.SigV4Auth(Credentials(access_key, secret, token[0] if token else None), service, region)
    if at is None:
        signer.add_auth(request)
    else:
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
            signer.add_auth(request)
    prepared = request.prepare()
    return {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
