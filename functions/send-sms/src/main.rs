//! The `send-sms` Lambda: builds configuration and AWS clients once per cold start, then serves
//! API Gateway requests with the handler in `lib.rs`.

use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::telemetry::init();
    let services = herald::lambda::services_from_env().await?;
    run(service_fn(|req| send_sms::handle(&services, req))).await
}
