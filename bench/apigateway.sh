#!/usr/bin/env bash
# API Gateway benchmark: a warm Rust function (AWS's lambda_runtime crate) behind an
# HTTP API route (payload format 2.0) and a REST API's greedy proxy resource (the v1
# proxy event), next to the same function's URL and a bare
# loopback HTTP round trip, each an unsigned GET replayed by wrk: latency over one
# connection, requests/s over sixteen.
#
#   bench/apigateway.sh
#   BENCH_ROUNDS=3 BENCH_SECS=10 bench/apigateway.sh
bench=apigateway.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
many=16

build
build_rust_function
start_bare
start_nimbus --lambda-keep-alive 3600

# The function, its URL and a quick-created HTTP API allowed to invoke it; the paths
# the replays GET.
read -r url_path api_path rest_path < <(PYTHONPATH=$root/bench/py "$python" - "$credentials" "$nimbus_url" \
    "$target_dir/e2e-functions/release/rust_hello" <<'PY'
import configparser
import sys
import urllib.parse

import boto3

from lambda_bench import client, deploy, functions

credentials_file, url, rust_binary = sys.argv[1:]
lambda_client = client(credentials_file, url)
deploy(lambda_client, functions(rust_binary, ["rust"]))
arn = lambda_client.get_function(FunctionName="rust")["Configuration"]["FunctionArn"]
function_url = lambda_client.create_function_url_config(FunctionName="rust", AuthType="NONE")["FunctionUrl"]
lambda_client.add_permission(FunctionName="rust", StatementId="url", Action="lambda:InvokeFunctionUrl",
                             Principal="*", FunctionUrlAuthType="NONE")
keys = configparser.ConfigParser()
keys.read(credentials_file)
apis = boto3.client("apigatewayv2", endpoint_url=url, region_name="us-east-1",
                    aws_access_key_id=keys["nimbus"]["aws_access_key_id"],
                    aws_secret_access_key=keys["nimbus"]["aws_secret_access_key"])
api = apis.create_api(Name="bench", ProtocolType="HTTP", Target=arn)
lambda_client.add_permission(FunctionName="rust", StatementId="api", Action="lambda:InvokeFunction",
                             Principal="apigateway.amazonaws.com",
                             SourceArn=f"arn:aws:execute-api:us-east-1:000000000000:{api['ApiId']}/*")
# A REST API as SAM makes it: ANY on a greedy proxy resource, deployed to a stage.
rest = boto3.client("apigateway", endpoint_url=url, region_name="us-east-1",
                    aws_access_key_id=keys["nimbus"]["aws_access_key_id"],
                    aws_secret_access_key=keys["nimbus"]["aws_secret_access_key"])
rest_api = rest.create_rest_api(name="bench")
proxy = rest.create_resource(restApiId=rest_api["id"], parentId=rest_api["rootResourceId"], pathPart="{proxy+}")
rest.put_method(restApiId=rest_api["id"], resourceId=proxy["id"], httpMethod="ANY", authorizationType="NONE")
rest.put_integration(restApiId=rest_api["id"], resourceId=proxy["id"], httpMethod="ANY", type="AWS_PROXY",
                     integrationHttpMethod="POST",
                     uri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations")
rest.create_deployment(restApiId=rest_api["id"], stageName="bench")
lambda_client.add_permission(FunctionName="rust", StatementId="rest", Action="lambda:InvokeFunction",
                             Principal="apigateway.amazonaws.com",
                             SourceArn=f"arn:aws:execute-api:us-east-1:000000000000:{rest_api['id']}/*")
# The URL's path form, whichever form the server named it by.
address = urllib.parse.urlsplit(function_url)
url_path = address.path if address.path.startswith("/_nimbus/") else f"/_nimbus/lambda-url/{address.hostname.split('.')[0]}/"
print(f"{url_path.rstrip('/')}/items/1 /_nimbus/execute-api/{api['ApiId']}/items/1 "
      f"/_nimbus/execute-api/{rest_api['id']}/bench/items/1")
PY
)
echo "replaying GET $url_path, GET $api_path and GET $rest_path" >&2
for name in url api rest; do
    path_var=${name}_path
    printf 'wrk.method = "GET"\nwrk.path = "%s"\n' "${!path_var}" >"$tmp/$name.lua"
    cat "$tmp/report.lua" >>"$tmp/$name.lua"
    code=$(curl -sS -o "$tmp/$name.out" -w '%{http_code}' "${nimbus_url%/}${!path_var}")
    [[ $code == 200 ]] || die "GET $name answered HTTP $code: $(cat "$tmp/$name.out")"
done

for round in $(seq "$rounds"); do
    measure bare "$bare_url" "$tmp/report.lua" "$bare_pid" "$many" >>"$tmp/bare"
    measure url "$nimbus_url" "$tmp/url.lua" "$nimbus_pid" "$many" >>"$tmp/url"
    measure api "$nimbus_url" "$tmp/api.lua" "$nimbus_pid" "$many" >>"$tmp/api"
    measure rest "$nimbus_url" "$tmp/rest.lua" "$nimbus_pid" "$many" >>"$tmp/rest"
    echo "round $round/$rounds done" >&2
done

printf '%-40s %10s %10s %12s %14s\n' "" "p50 µs" "p99 µs" "req/s (16)" "CPU µs/req"
for name in bare url api rest; do
    read -r p50 p99 rps cpu < <(medians "$tmp/$name")
    case $name in
        bare) label="bare loopback HTTP" ;;
        url) label="function URL -> warm Rust function" ;;
        api) label="HTTP API route -> warm Rust function" ;;
        rest) label="REST API proxy -> warm Rust function" ;;
    esac
    printf '%-40s %10s %10s %12s %14s\n' "$label" "$p50" "$p99" "$rps" "$cpu"
done
echo "medians of $rounds rounds of ${secs}s; $idle"
