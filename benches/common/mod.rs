//! A bare API client for the benchmarks: logs in to the simulator and posts raw requests, so a
//! benchmark measures the part it is about and not the exporter's session handling.

use serde_json::{json, Value};
use ucm_sim::{self as sim, SimHandle};

pub struct SimClient {
    http: reqwest::Client,
    url: String,
    pub cookie: String,
}

impl SimClient {
    pub async fn login(ucm: &SimHandle) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ucm.ca_pem().as_bytes())?])
            .build()?;
        let mut client = SimClient {
            http,
            url: format!("{}/api", ucm.url()),
            cookie: String::new(),
        };
        let challenge: Value = serde_json::from_slice(
            &client
                .post(json!({"action": "challenge", "user": "cdrapi"}))
                .await?,
        )?;
        let token = sim::token(
            challenge["response"]["challenge"]
                .as_str()
                .unwrap_or_default(),
            "cdrapi-secret",
        );
        let login: Value = serde_json::from_slice(
            &client
                .post(json!({"action": "login", "user": "cdrapi", "token": token}))
                .await?,
        )?;
        client.cookie = login["response"]["cookie"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(client)
    }

    pub async fn post(&self, request: Value) -> anyhow::Result<Vec<u8>> {
        Ok(self
            .http
            .post(&self.url)
            .body(json!({ "request": request }).to_string())
            .send()
            .await?
            .bytes()
            .await?
            .to_vec())
    }
}
