//! The `send-sms` Lambda: builds configuration and AWS clients once per cold start, then serves
//! both of its triggers with `lib.rs`: API Gateway requests (the SMS API) and SQS batches from
//! the send queue (one job per message of a bulk request).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    herald::lambda::run_api("send-sms", send_sms::handle).await
}
