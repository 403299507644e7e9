//! The `place-call` Lambda: builds configuration and AWS clients once per cold start, then
//! serves API Gateway requests (the voice API) with `lib.rs`, its only trigger on AWS. An SQS
//! batch of call jobs given to it directly (a local run, `cargo lambda invoke`) is handled too;
//! on AWS call jobs go to the retry queue, which `retry-processor` consumes.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    herald::lambda::run_api("place-call", place_call::handle).await
}
