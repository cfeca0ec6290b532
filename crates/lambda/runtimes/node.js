// nimbus's runtime client for Node.js functions: loads `_HANDLER` from the task root
// and serves invocations from the Lambda Runtime API until the environment stops.
"use strict";

const http = require("http");
const path = require("path");

const [HOST, PORT] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
const API = "/2018-06-01/runtime";
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function call(method, route, body, headers) {
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: HOST, port: PORT, method, path: API + route, agent, headers: headers || {} },
      (response) => {
        const chunks = [];
        response.on("data", (chunk) => chunks.push(chunk));
        response.on("end", () => resolve({ headers: response.headers, body: Buffer.concat(chunks).toString() }));
      },
    );
    request.on("error", reject);
    if (body !== undefined) request.write(body);
    request.end();
  });
}

function errorShape(error, errorType) {
  const stack = error && error.stack ? String(error.stack).split("\n") : [];
  return {
    errorType: errorType || (error && error.name) || "Error",
    errorMessage: error && error.message !== undefined ? String(error.message) : String(error),
    trace: stack,
  };
}

function postError(route, shape, errorType) {
  const body = JSON.stringify(shape);
  return call("POST", route, body, {
    "Content-Type": "application/json",
    "Lambda-Runtime-Function-Error-Type": errorType,
  });
}

async function loadHandler(spec) {
  const dot = spec.lastIndexOf(".");
  if (dot <= 0) {
    throw { errorType: "Runtime.MalformedHandlerName", message: `Bad handler ${spec}` };
  }
  const modulePath = path.resolve(process.env.LAMBDA_TASK_ROOT, spec.slice(0, dot));
  const name = spec.slice(dot + 1);
  let module;
  try {
    module = require(modulePath);
  } catch (error) {
    if (error && error.code === "ERR_REQUIRE_ESM") {
      module = await import(modulePath + ".mjs").catch(() => import(modulePath + ".js"));
    } else if (error && error.code === "MODULE_NOT_FOUND" && String(error.message).includes(modulePath)) {
      try {
        module = await import(modulePath + ".mjs");
      } catch (_) {
        throw { errorType: "Runtime.ImportModuleError", message: `Error: Cannot find module '${spec.slice(0, dot)}'` };
      }
    } else {
      throw { errorType: "Runtime.ImportModuleError", message: String(error && error.stack ? error.stack : error) };
    }
  }
  const handler = module[name];
  if (typeof handler !== "function") {
    throw { errorType: "Runtime.HandlerNotFound", message: `${spec} is undefined or not exported` };
  }
  return handler;
}

function invokeHandler(handler, event, context) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const callback = (error, result) => {
      if (settled) return;
      settled = true;
      if (error !== undefined && error !== null) reject(error);
      else resolve(result);
    };
    context.done = callback;
    context.succeed = (result) => callback(null, result);
    context.fail = (error) => callback(error);
    try {
      const returned = handler(event, context, callback);
      if (returned && typeof returned.then === "function") {
        returned.then((result) => callback(null, result), (error) => callback(error === undefined ? new Error("undefined") : error));
      } else if (handler.length < 3) {
        callback(null, returned);
      }
    } catch (error) {
      callback(error);
    }
  });
}

async function main() {
  let handler;
  try {
    handler = await loadHandler(process.env._HANDLER);
  } catch (failure) {
    const errorType = failure.errorType || "Runtime.ImportModuleError";
    console.error(`ERROR\t${errorType}: ${failure.message}`);
    await postError("/init/error", { errorType, errorMessage: failure.message, trace: [] }, errorType);
    process.exit(1);
  }
  for (;;) {
    const next = await call("GET", "/invocation/next");
    const id = next.headers["lambda-runtime-aws-request-id"];
    if (id === undefined) process.exit(0); // the environment is shutting down
    const deadline = Number(next.headers["lambda-runtime-deadline-ms"]);
    const clientContext = next.headers["lambda-runtime-client-context"];
    const context = {
      awsRequestId: id,
      invokedFunctionArn: next.headers["lambda-runtime-invoked-function-arn"],
      functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
      functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
      memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
      clientContext: clientContext ? JSON.parse(clientContext) : undefined,
      callbackWaitsForEmptyEventLoop: true,
      getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    };
    try {
      const result = await invokeHandler(handler, JSON.parse(next.body), context);
      const body = result === undefined ? "null" : JSON.stringify(result);
      await call("POST", `/invocation/${id}/response`, body, { "Content-Type": "application/json" });
    } catch (error) {
      const shape = errorShape(error);
      console.error(`${new Date().toISOString()}\t${id}\tERROR\tInvoke Error \t${JSON.stringify(shape)}`);
      await postError(`/invocation/${id}/error`, shape, "Unhandled");
    }
  }
}

main();
