exports.handler = async (event, context) => {
  console.log("node async", JSON.stringify(event));
  if (event.fail) {
    throw new TypeError("node failure");
  }
  return {
    event,
    functionName: context.functionName,
    requestId: context.awsRequestId,
    remaining: context.getRemainingTimeInMillis(),
    executionEnv: process.env.AWS_EXECUTION_ENV,
  };
};
