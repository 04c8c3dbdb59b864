//! Synthetic logs with the pipeline's distributions, deterministic for a given seed.

use std::sync::Arc;

use arrow::array::{Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::record_batch::RecordBatch;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::schema::logs_schema;

pub const LEVELS: &[&str] = &["INFO", "DEBUG", "WARN", "ERROR"];
pub const SERVICES: &[&str] = &["api-gateway", "user-service", "order-service", "payment-service"];
pub const HOSTS: &[&str] = &["worker-1", "worker-2", "worker-3"];
const ENDPOINTS: &[&str] =
    &["/api/v1/users", "/api/v1/orders", "/api/v1/payments", "/api/v1/login", "/api/v1/cart", "/health"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];

const INFO_MSGS: &[&str] = &[
    "Request processed successfully",
    "User logged in",
    "Order created",
    "Payment accepted",
    "Cache refreshed",
    "Session started",
    "Profile updated",
    "Item added to cart",
    "Checkout completed",
    "Token issued",
    "Health check passed",
    "Notification sent",
];
const DEBUG_MSGS: &[&str] = &[
    "Entering handler",
    "Query plan selected",
    "Cache lookup",
    "Serializing response",
    "Parsed request body",
    "Opening connection",
    "Retry scheduled",
    "Feature flag evaluated",
    "Validating input",
    "Loaded configuration",
    "Span closed",
    "Connection returned to pool",
];
const WARN_MSGS: &[&str] = &[
    "Slow response detected",
    "Retrying request",
    "Deprecated endpoint used",
    "Cache miss rate high",
    "Connection pool nearly exhausted",
    "Rate limit approaching",
    "Payload larger than expected",
    "Token close to expiry",
    "Fallback used",
    "Queue depth increasing",
    "Disk usage above 80%",
    "Timeout close to limit",
];
const ERROR_MSGS: &[&str] = &[
    "Database connection failed",
    "Payment gateway timeout",
    "Null reference in handler",
    "Order validation failed",
    "Upstream service unavailable",
    "Failed to write to queue",
    "Authentication service error",
    "Unhandled exception",
    "Transaction rolled back",
    "Out of memory in worker",
    "Deadlock detected",
    "Invalid state transition",
];

/// Produces `logs` rows in time order: ids ascend, timestamps advance ~`1/rate` s per row.
pub struct Generator {
    rng: SmallRng,
    next_id: i64,
    t: f64,
    step: f64,
}

impl Generator {
    pub fn new(seed: u64, first_id: i64, start_time: f64, rows_per_second: f64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            next_id: first_id,
            t: start_time,
            step: 1.0 / rows_per_second.max(1e-6),
        }
    }

    fn pick_level(&mut self) -> usize {
        // INFO 60 %, DEBUG 20 %, WARN 15 %, ERROR 5 %.
        match self.rng.random_range(0..100) {
            0..=59 => 0,
            60..=79 => 1,
            80..=94 => 2,
            _ => 3,
        }
    }

    pub fn next_batch(&mut self, rows: usize) -> RecordBatch {
        let mut id = Int64Builder::with_capacity(rows);
        let mut ts = Float64Builder::with_capacity(rows);
        let mut level = StringBuilder::with_capacity(rows, rows * 5);
        let mut service = StringBuilder::with_capacity(rows, rows * 14);
        let mut host = StringBuilder::with_capacity(rows, rows * 8);
        let mut message = StringBuilder::with_capacity(rows, rows * 24);
        let mut metadata = StringBuilder::with_capacity(rows, rows * 150);
        let mut created = TimestampMicrosecondBuilder::with_capacity(rows);
        let mut meta = String::with_capacity(200);
        for _ in 0..rows {
            let l = self.pick_level();
            let msgs = [INFO_MSGS, DEBUG_MSGS, WARN_MSGS, ERROR_MSGS][l];
            // Jitter keeps timestamps unique-ish but strictly increasing.
            self.t += self.step * self.rng.random_range(0.5..1.5);
            let t = (self.t * 1e6).round() / 1e6;
            let status = match l {
                3 => [500, 502, 503, 504][self.rng.random_range(0..4)],
                2 => [200, 400, 404, 429][self.rng.random_range(0..4)],
                _ => [200, 201, 204][self.rng.random_range(0..3)],
            };
            let rt = match l {
                3 => self.rng.random_range(500..5000),
                2 => self.rng.random_range(200..2000),
                _ => self.rng.random_range(5..300),
            };
            let uuid = uuid::Builder::from_random_bytes(self.rng.random()).into_uuid();
            meta.clear();
            use std::fmt::Write;
            let _ = write!(
                meta,
                "{{\"request_id\": \"{uuid}\", \"response_time_ms\": {rt}, \"status_code\": {status}, \"endpoint\": \"{}\", \"method\": \"{}\"}}",
                ENDPOINTS[self.rng.random_range(0..ENDPOINTS.len())],
                METHODS[self.rng.random_range(0..METHODS.len())]
            );
            id.append_value(self.next_id);
            self.next_id += 1;
            ts.append_value(t);
            level.append_value(LEVELS[l]);
            service.append_value(SERVICES[self.rng.random_range(0..SERVICES.len())]);
            host.append_value(HOSTS[self.rng.random_range(0..HOSTS.len())]);
            message.append_value(msgs[self.rng.random_range(0..msgs.len())]);
            metadata.append_value(&meta);
            created.append_value((t * 1e6).round() as i64);
        }
        RecordBatch::try_new(
            logs_schema(),
            vec![
                Arc::new(id.finish()),
                Arc::new(ts.finish()),
                Arc::new(level.finish()),
                Arc::new(service.finish()),
                Arc::new(host.finish()),
                Arc::new(message.finish()),
                Arc::new(metadata.finish()),
                Arc::new(created.finish()),
            ],
        )
        .expect("generator batch matches the logs schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Float64Type;

    #[test]
    fn same_seed_same_rows_and_time_ordered() {
        let a = Generator::new(7, 1, 1.7e9, 100.0).next_batch(5000);
        let b = Generator::new(7, 1, 1.7e9, 100.0).next_batch(5000);
        assert_eq!(a, b);
        let ts = a.column(1).as_primitive::<Float64Type>();
        assert!(ts.values().windows(2).all(|w| w[0] < w[1]));
        let levels = a.column(2).as_string::<i32>();
        let errors = (0..levels.len()).filter(|i| levels.value(*i) == "ERROR").count();
        assert!((150..350).contains(&errors), "ERROR share off: {errors}/5000");
    }
}
