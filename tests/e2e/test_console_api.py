"""The web console's server side, as a browser meets it: sign-in with an access key
pair, the HttpOnly session cookie, CSRF and origin checks, one-time login links from
`nimbus console`, and the proxy that signs the page's AWS requests as the signed-in
principal, so IAM decides what the console may do."""

import json
import subprocess
import uuid

import requests

from test_cli import cli_env
from conftest import nimbus_binary


def sign_in(nimbus, key_id=None, secret=None):
    if key_id is None:
        key_id, secret = nimbus.root_keys()
    browser = requests.Session()
    answer = browser.post(f"{nimbus.endpoint}/console/api/signin",
                          json={"accessKeyId": key_id, "secretAccessKey": secret})
    return browser, answer


def aws(browser, nimbus, service, method, path, csrf, **kwargs):
    headers = {"x-nimbus-service": service, "x-nimbus-csrf": csrf, **kwargs.pop("headers", {})}
    return browser.request(method, f"{nimbus.endpoint}/console/aws{path}", headers=headers, **kwargs)


def test_signing_in_gives_an_http_only_session_and_no_secret(nimbus):
    browser, answer = sign_in(nimbus)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["principal"].endswith(":root")
    assert set(body) == {"principal", "account", "region", "csrf", "expires", "endpoint"}
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("nimbus-console=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    _, secret = nimbus.root_keys()
    assert secret not in answer.text and secret not in cookie

    session = browser.get(f"{nimbus.endpoint}/console/api/session")
    assert session.json()["csrf"] == body["csrf"]

    out = browser.post(f"{nimbus.endpoint}/console/api/signout", headers={"x-nimbus-csrf": body["csrf"]})
    assert out.status_code == 204
    assert browser.get(f"{nimbus.endpoint}/console/api/session").status_code == 401


def test_wrong_keys_are_refused(nimbus):
    key_id, _ = nimbus.root_keys()
    _, answer = sign_in(nimbus, key_id, "not-the-secret")
    assert answer.status_code == 401
    assert "signature" in answer.json()["message"].lower()
    _, answer = sign_in(nimbus, "AKIANOTAKEY", "x")
    assert answer.status_code == 401
    empty = requests.post(f"{nimbus.endpoint}/console/api/signin", json={"accessKeyId": "", "secretAccessKey": ""})
    assert empty.status_code == 400
    form = requests.post(f"{nimbus.endpoint}/console/api/signin", data={"accessKeyId": key_id})
    assert form.status_code == 415


def test_the_proxy_needs_the_session_the_csrf_token_and_the_same_origin(nimbus):
    browser, answer = sign_in(nimbus)
    csrf = answer.json()["csrf"]
    assert aws(browser, nimbus, "lambda", "GET", "/2015-03-31/functions/", csrf).status_code == 200
    assert aws(browser, nimbus, "lambda", "GET", "/2015-03-31/functions/", "wrong").status_code == 403
    anonymous = requests.get(f"{nimbus.endpoint}/console/aws/2015-03-31/functions/",
                             headers={"x-nimbus-service": "lambda", "x-nimbus-csrf": csrf})
    assert anonymous.status_code == 401
    cross_site = aws(browser, nimbus, "lambda", "GET", "/2015-03-31/functions/", csrf,
                     headers={"origin": "http://evil.example"})
    assert cross_site.status_code == 403
    unknown = aws(browser, nimbus, "nope", "GET", "/", csrf)
    assert unknown.status_code == 400 and "x-nimbus-service" in unknown.json()["message"]


def test_objects_go_up_and_down_through_the_proxy(nimbus):
    browser, answer = sign_in(nimbus)
    csrf = answer.json()["csrf"]
    bucket = f"console-{uuid.uuid4().hex[:8]}"
    assert aws(browser, nimbus, "s3", "PUT", f"/{bucket}", csrf).status_code == 200
    body = bytes(range(256)) * 4096
    put = aws(browser, nimbus, "s3", "PUT", f"/{bucket}/dir/a%20file.bin", csrf, data=body)
    assert put.status_code == 200, put.text
    # A download link carries the token and the service in its query instead of headers.
    link = browser.get(f"{nimbus.endpoint}/console/aws/{bucket}/dir/a%20file.bin?nimbus-service=s3&nimbus-csrf={csrf}")
    assert link.status_code == 200 and link.content == body
    posted = browser.post(f"{nimbus.endpoint}/console/aws/{bucket}/x?nimbus-service=s3&nimbus-csrf={csrf}")
    assert posted.status_code == 403
    assert nimbus.client("s3").get_object(Bucket=bucket, Key="dir/a file.bin")["Body"].read() == body


def test_the_console_acts_as_the_signed_in_principal(nimbus):
    iam = nimbus.client("iam")
    name = f"console-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="list-functions", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:ListFunctions", "Resource": "*"}],
    }))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    browser, answer = sign_in(nimbus, key["AccessKeyId"], key["SecretAccessKey"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["principal"].endswith(f":user/{name}")
    csrf = answer.json()["csrf"]
    assert aws(browser, nimbus, "lambda", "GET", "/2015-03-31/functions/", csrf).status_code == 200
    denied = aws(browser, nimbus, "s3", "GET", "/", csrf)
    assert denied.status_code == 403 and "AccessDenied" in denied.text


def test_a_login_link_signs_in_once(nimbus):
    made = subprocess.run([nimbus_binary(), "console"], capture_output=True, text=True, timeout=60,
                          env=cli_env(nimbus))
    assert made.returncode == 0, made.stderr
    url = made.stdout.strip()
    assert url.startswith(f"{nimbus.endpoint}/console/login?token=")
    browser = requests.Session()
    opened = browser.get(url)
    assert opened.status_code == 200 and opened.url == f"{nimbus.endpoint}/console/"
    assert browser.get(f"{nimbus.endpoint}/console/api/session").json()["principal"].endswith(":root")
    again = requests.get(url, allow_redirects=False)
    assert again.status_code == 410 and "nimbus console" in again.text


def test_pages_are_served_compressed_with_a_strict_policy(nimbus):
    page = requests.get(f"{nimbus.endpoint}/console/")
    assert page.status_code == 200
    assert page.headers["content-encoding"] == "gzip"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    plain = requests.get(f"{nimbus.endpoint}/console/", headers={"accept-encoding": "identity"})
    assert plain.text == page.text and "content-encoding" not in plain.headers
    assert requests.get(f"{nimbus.endpoint}/console/assets/..%2F..%2Fcredentials").status_code == 404
    assert requests.get(f"{nimbus.endpoint}/console/nothing-here.js").status_code == 404
