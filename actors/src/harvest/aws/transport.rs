//! The AWS transport: signing, credentials and dispatch, in one place.
//!
//! Owns: every byte Palisade sends to AWS. Endpoints (`AWS_ENDPOINT_URL_<SERVICE>`, then
//! `AWS_ENDPOINT_URL`, else the real ones), SigV4 signing and credential providers
//! (rusoto_core, kept behind this module so it can be replaced here alone), the HTTP
//! client (hyper 0.14 over [`crate::proxy::ProxyConnector`], so `http_proxy`,
//! `https_proxy` and `no_proxy` apply to API calls, STS and instance metadata alike), the
//! per (account, region, service) rate limits, and retries of throttling and 5xx answers
//! (and of connection failures and timeouts) with full-jitter backoff. Three wire
//! protocols: query (EC2, IAM, RDS, STS), JSON 1.1 (KMS, CloudTrail) and REST-XML GETs
//! (S3, path-style).
//!
//! Must never: log or put in an error an access key secret, a session token, a signature
//! or a proxy password; send a request before taking a rate-limit token; or retry an
//! answer that [`super::retry::is_retryable`] calls final.

use super::ratelimit::RateLimits;
use super::retry::{backoff, is_retryable, is_throttling};
use super::xml::{list, xml_to_json};
use crate::proxy::{https_connector, ProxyConfig, ProxyConnector};
use crate::settings::AwsSettings;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Body, Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use palisade_proto::Credentials;
use rusoto_core::credential::{
    AwsCredentials, EnvironmentProvider, ProfileProvider, ProvideAwsCredentials,
};
use rusoto_core::signature::SignedRequest;
use rusoto_core::Region;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Services whose endpoints can be overridden with `AWS_ENDPOINT_URL_<SERVICE>`.
pub const SERVICES: &[&str] = &["ec2", "s3", "iam", "rds", "kms", "cloudtrail", "sts"];

/// The region that global services (IAM, STS's global endpoint) sign with.
pub const GLOBAL_SIGNING_REGION: &str = "us-east-1";

const STS_VERSION: &str = "2011-06-15";
const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);
/// Credentials this close to expiry are refreshed before use.
const REFRESH_MARGIN_SECS: i64 = 300;
/// Rate-limit account key for calls made before the account id is known.
const UNKNOWN_ACCOUNT: &str = "-";
/// Longest error message kept from an answer body that is not a parsable error.
const MAX_RAW_MESSAGE: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The API answered with an error (after retries for retryable ones): HTTP status, AWS
    /// error code, message.
    #[error("{service} {action}: {code} ({status}): {message}")]
    Api {
        service: &'static str,
        action: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{service} {action}: still throttled after {attempts} attempts")]
    Throttled {
        service: &'static str,
        action: String,
        attempts: u32,
    },
    #[error("transport: {0}")]
    Transport(String),
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("undecodable response: {0}")]
    Decode(String),
}

impl AwsError {
    /// The AWS error code of an [`AwsError::Api`] (e.g. `NoSuchEntity`).
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

type HttpClient = hyper::Client<HttpsConnector<ProxyConnector>, Body>;

/// Where one service is reached and how requests to it are signed.
struct Endpoint {
    /// The endpoint URL as given (scheme, authority, optional base path), for rusoto's
    /// canonical path.
    url: String,
    scheme: String,
    /// `host[:port]`: the Host header and the signed host.
    authority: String,
    signing_region: String,
}

/// How a request is encoded and its answer decoded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Query,
    Json,
    RestXml,
}

/// One API call, before signing (signed afresh on every attempt).
struct Call<'a> {
    service: &'static str,
    region: &'a str,
    /// For errors and logs: the action, JSON target or S3 path.
    action: String,
    protocol: Protocol,
    method: &'static str,
    path: &'a str,
    query: Vec<(String, String)>,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

/// The shared AWS client: one per process, used by every session.
pub struct AwsTransport {
    client: HttpClient,
    proxy: Arc<ProxyConfig>,
    /// `AWS_ENDPOINT_URL_<SERVICE>` overrides, by lowercase service name.
    endpoints: HashMap<&'static str, String>,
    /// `AWS_ENDPOINT_URL`.
    default_endpoint: Option<String>,
    imds_endpoint: String,
    limits: RateLimits,
    settings: AwsSettings,
}

impl AwsTransport {
    /// Endpoints come from AWS_ENDPOINT_URL_<SERVICE> (EC2, S3, IAM, RDS, KMS, CLOUDTRAIL,
    /// STS) then AWS_ENDPOINT_URL, else the real AWS endpoints; read once here.
    pub fn new(settings: &AwsSettings, proxy: ProxyConfig) -> Result<AwsTransport, AwsError> {
        AwsTransport::with_vars(settings, proxy, |name| std::env::var(name).ok())
    }

    /// [`AwsTransport::new`] with the endpoint variables (and
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT`) read through `get` instead of the environment.
    /// Credentials of the default chain still come from the process environment.
    pub fn with_vars(
        settings: &AwsSettings,
        proxy: ProxyConfig,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<AwsTransport, AwsError> {
        let read = |var: &str| -> Result<Option<String>, AwsError> {
            match get(var).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(url) => validate_endpoint(var, url.trim()).map(Some),
            }
        };
        let mut endpoints = HashMap::new();
        for service in SERVICES {
            let var = format!("AWS_ENDPOINT_URL_{}", service.to_ascii_uppercase());
            if let Some(url) = read(&var)? {
                endpoints.insert(*service, url);
            }
        }
        let default_endpoint = read("AWS_ENDPOINT_URL")?;
        let imds_endpoint = read("AWS_EC2_METADATA_SERVICE_ENDPOINT")?
            .unwrap_or_else(|| DEFAULT_IMDS_ENDPOINT.to_string());
        let proxy = Arc::new(proxy);
        let connector = https_connector(
            proxy.clone(),
            Duration::from_secs(settings.connect_timeout_secs.max(1)),
        );
        let client = hyper::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(AwsTransport {
            client,
            proxy,
            endpoints,
            default_endpoint,
            imds_endpoint,
            limits: RateLimits::new(settings),
            settings: settings.clone(),
        })
    }

    /// Resolve credentials for a cloud account and learn its account id (STS
    /// GetCallerIdentity, counted as the session's first API call).
    ///
    /// Default chain: env vars (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN),
    /// shared profile (AWS_PROFILE, ~/.aws/credentials), then EC2 instance metadata
    /// (IMDSv2 at AWS_EC2_METADATA_SERVICE_ENDPOINT or http://169.254.169.254, through
    /// this transport's client so the proxy rules apply, 1 s timeout). AssumeRole: STS
    /// AssumeRole (RoleSessionName "palisade", ExternalId when set) signed with the
    /// default chain's credentials; refreshed before expiry.
    pub async fn session(self: &Arc<Self>, creds: &Credentials) -> Result<AwsSession, AwsError> {
        let source = match creds {
            Credentials::Default => CredentialSource::Chain,
            Credentials::Keys {
                access_key_id,
                secret_access_key,
                session_token,
            } => CredentialSource::Static(AwsCredentials::new(
                access_key_id.clone(),
                secret_access_key.clone(),
                session_token.clone(),
                None,
            )),
            Credentials::AssumeRole {
                role_arn,
                external_id,
            } => CredentialSource::AssumeRole {
                role_arn: role_arn.clone(),
                external_id: external_id.clone(),
            },
        };
        let credentials = SessionCredentials {
            source,
            cached: tokio::sync::Mutex::new(None),
        };
        let calls = AtomicU64::new(0);
        let current = credentials.current(self).await?;
        let identity = self
            .dispatch_query(
                &current,
                UNKNOWN_ACCOUNT,
                Some(&calls),
                "sts",
                GLOBAL_SIGNING_REGION,
                "GetCallerIdentity",
                STS_VERSION,
                &[],
            )
            .await?;
        let account_id = identity["GetCallerIdentityResult"]["Account"]
            .as_str()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| AwsError::Decode("GetCallerIdentity answer has no Account".into()))?
            .to_string();
        let caller_arn = identity["GetCallerIdentityResult"]["Arn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        info!(account = %account_id, kind = creds.kind(), "aws session ready");
        Ok(AwsSession {
            inner: Arc::new(SessionInner {
                transport: self.clone(),
                credentials,
                account_id,
                caller_arn,
                calls,
                shared: Default::default(),
            }),
        })
    }

    /// The endpoint of a service in a region.
    fn endpoint(&self, service: &str, region: &str) -> Result<Endpoint, AwsError> {
        let global = matches!(service, "iam" | "sts");
        let signing_region = if global {
            GLOBAL_SIGNING_REGION.to_string()
        } else {
            region.to_string()
        };
        let url = match self
            .endpoints
            .get(service)
            .or(self.default_endpoint.as_ref())
        {
            Some(url) => url.clone(),
            None if global => format!("https://{service}.amazonaws.com"),
            None => format!("https://{service}.{region}.amazonaws.com"),
        };
        let uri: Uri = url
            .parse()
            .map_err(|_| AwsError::Transport(format!("invalid endpoint {url}")))?;
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| AwsError::Transport(format!("endpoint {url} has no host")))?;
        Ok(Endpoint {
            url,
            scheme,
            authority,
            signing_region,
        })
    }

    /// A query-protocol call (POST form) with explicit credentials.
    #[allow(clippy::too_many_arguments)]
    async fn dispatch_query(
        &self,
        creds: &AwsCredentials,
        account: &str,
        counter: Option<&AtomicU64>,
        service: &'static str,
        region: &str,
        action: &str,
        version: &str,
        params: &[(String, String)],
    ) -> Result<Value, AwsError> {
        let mut form = String::with_capacity(64);
        form.push_str("Action=");
        form.push_str(&form_encode(action));
        form.push_str("&Version=");
        form.push_str(&form_encode(version));
        for (k, v) in params {
            form.push('&');
            form.push_str(&form_encode(k));
            form.push('=');
            form.push_str(&form_encode(v));
        }
        let call = Call {
            service,
            region,
            action: action.to_string(),
            protocol: Protocol::Query,
            method: "POST",
            path: "/",
            query: Vec::new(),
            headers: vec![(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8".to_string(),
            )],
            body: Some(form.into_bytes()),
        };
        let body = self.dispatch(creds, account, counter, &call).await?;
        xml_to_json(&body).map_err(|e| AwsError::Decode(format!("{service} {action}: {e}")))
    }

    /// Send `call` with retries; the body of the first 2xx answer, or the final error.
    async fn dispatch(
        &self,
        creds: &AwsCredentials,
        account: &str,
        counter: Option<&AtomicU64>,
        call: &Call<'_>,
    ) -> Result<Bytes, AwsError> {
        let endpoint = self.endpoint(call.service, call.region)?;
        let max_attempts = self.settings.max_attempts.max(1);
        let timeout = Duration::from_secs(self.settings.request_timeout_secs.max(1));
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.limits
                .acquire(account, call.region, call.service)
                .await;
            if let Some(counter) = counter {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            let request = build_request(&endpoint, creds, call, &self.proxy)?;
            let outcome = tokio::time::timeout(timeout, async {
                let response = self.client.request(request).await?;
                let (parts, body) = response.into_parts();
                let body = hyper::body::to_bytes(body).await?;
                Ok::<_, hyper::Error>((parts, body))
            })
            .await;
            let last = attempt >= max_attempts;
            let wait = backoff(
                attempt - 1,
                self.settings.backoff_base_ms,
                self.settings.backoff_cap_ms,
            );
            let failure = match outcome {
                Ok(Ok((parts, body))) => Ok((parts, body)),
                Ok(Err(e)) => Err(error_chain(&e)),
                Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
            };
            let (parts, body) = match failure {
                Ok(answer) => answer,
                Err(reason) => {
                    crate::metrics::inc(
                        "palisade_aws_requests_total",
                        &[("service", call.service), ("outcome", "transport_error")],
                    );
                    if last {
                        warn!(service = call.service, action = %call.action, attempt, error = %reason, "aws request failed, giving up");
                        return Err(AwsError::Transport(format!(
                            "{} {}: {reason}",
                            call.service, call.action
                        )));
                    }
                    warn!(service = call.service, action = %call.action, attempt, error = %reason, "aws request failed, retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let status = parts.status.as_u16();
            if parts.status.is_success() {
                crate::metrics::inc(
                    "palisade_aws_requests_total",
                    &[("service", call.service), ("outcome", "ok")],
                );
                return Ok(body);
            }
            let (code, message) = parse_error(call.protocol, &parts.headers, &body);
            let retryable = is_retryable(status, &code);
            let throttled = is_throttling(status, &code);
            let outcome = if throttled {
                "throttled"
            } else if status >= 500 {
                "server_error"
            } else {
                "client_error"
            };
            crate::metrics::inc(
                "palisade_aws_requests_total",
                &[("service", call.service), ("outcome", outcome)],
            );
            if !retryable || last {
                if retryable {
                    warn!(service = call.service, action = %call.action, attempt, code = %code, status, "aws request still failing, giving up");
                }
                if throttled && retryable {
                    return Err(AwsError::Throttled {
                        service: call.service,
                        action: call.action.clone(),
                        attempts: attempt,
                    });
                }
                return Err(AwsError::Api {
                    service: call.service,
                    action: call.action.clone(),
                    status,
                    code,
                    message,
                });
            }
            if throttled {
                debug!(service = call.service, action = %call.action, attempt, code = %code, status, wait_ms = wait.as_millis() as u64, "aws throttled, backing off");
            } else {
                warn!(service = call.service, action = %call.action, attempt, code = %code, status, wait_ms = wait.as_millis() as u64, "aws server error, retrying");
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The default chain: environment, shared profile, instance metadata.
    async fn default_chain(&self) -> Result<AwsCredentials, AwsError> {
        let env_error = match EnvironmentProvider::default().credentials().await {
            Ok(c) => return Ok(c),
            Err(e) => e.message,
        };
        let profile_error = match ProfileProvider::new() {
            Ok(provider) => match provider.credentials().await {
                Ok(c) => return Ok(c),
                Err(e) => e.message,
            },
            Err(e) => e.message,
        };
        let imds_error = match self.imds_credentials().await {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        Err(AwsError::Credentials(format!(
            "no credentials in the default chain (environment: {env_error}; profile: {profile_error}; instance metadata: {imds_error})"
        )))
    }

    /// IMDSv2 role credentials, through our client (proxy rules apply).
    async fn imds_credentials(&self) -> Result<AwsCredentials, String> {
        let base = self.imds_endpoint.trim_end_matches('/');
        let token = self
            .plain_request(
                Method::PUT,
                &format!("{base}/latest/api/token"),
                &[("x-aws-ec2-metadata-token-ttl-seconds", "21600")],
            )
            .await?;
        let token = String::from_utf8(token.to_vec()).map_err(|_| "bad token".to_string())?;
        let headers = [("x-aws-ec2-metadata-token", token.trim())];
        let roles_url = format!("{base}/latest/meta-data/iam/security-credentials/");
        let roles = self
            .plain_request(Method::GET, &roles_url, &headers)
            .await?;
        let role = String::from_utf8_lossy(&roles)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
            .ok_or_else(|| "no instance role".to_string())?;
        let body = self
            .plain_request(Method::GET, &format!("{roles_url}{role}"), &headers)
            .await?;
        serde_json::from_slice::<AwsCredentials>(&body)
            .map_err(|_| format!("undecodable credentials of role {role}"))
    }

    /// An unsigned request with the IMDS timeout; the body of a 2xx answer. Errors never
    /// carry the body (it may hold credentials).
    async fn plain_request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Bytes, String> {
        let uri: Uri = url.parse().map_err(|_| format!("bad url {url}"))?;
        let mut builder = Request::builder().method(method).uri(uri.clone());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some(auth) = self.proxy.authorization_for(&uri) {
            builder = builder.header(hyper::header::PROXY_AUTHORIZATION, auth);
        }
        let request = builder
            .body(Body::empty())
            .map_err(|e| format!("bad request: {e}"))?;
        let answer = tokio::time::timeout(IMDS_TIMEOUT, async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = hyper::body::to_bytes(response.into_body()).await?;
            Ok::<_, hyper::Error>((status, body))
        })
        .await
        .map_err(|_| format!("{url}: no answer within {}s", IMDS_TIMEOUT.as_secs()))?
        .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
        if !answer.0.is_success() {
            return Err(format!("{url}: status {}", answer.0.as_u16()));
        }
        Ok(answer.1)
    }

    /// STS AssumeRole with the default chain's credentials.
    /// STS AssumeRole signed with `base` (the default chain's credentials in production).
    async fn assume_role(
        &self,
        base: &AwsCredentials,
        role_arn: &str,
        external_id: Option<&str>,
    ) -> Result<AwsCredentials, AwsError> {
        let mut params = vec![
            ("RoleArn".to_string(), role_arn.to_string()),
            ("RoleSessionName".to_string(), "palisade".to_string()),
        ];
        if let Some(id) = external_id {
            params.push(("ExternalId".to_string(), id.to_string()));
        }
        let answer = self
            .dispatch_query(
                base,
                UNKNOWN_ACCOUNT,
                None,
                "sts",
                GLOBAL_SIGNING_REGION,
                "AssumeRole",
                STS_VERSION,
                &params,
            )
            .await
            .map_err(|e| AwsError::Credentials(format!("assume role {role_arn}: {e}")))?;
        let c = &answer["AssumeRoleResult"]["Credentials"];
        let field = |name: &str| {
            c[name]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| {
                    AwsError::Credentials(format!("assume role {role_arn}: answer has no {name}"))
                })
        };
        let expires = c["Expiration"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        info!(role = role_arn, "assumed role");
        Ok(AwsCredentials::new(
            field("AccessKeyId")?,
            field("SecretAccessKey")?,
            Some(field("SessionToken")?),
            expires,
        ))
    }
}

/// Where a session's credentials come from.
enum CredentialSource {
    Static(AwsCredentials),
    Chain,
    AssumeRole {
        role_arn: String,
        external_id: Option<String>,
    },
}

/// A session's credentials, resolved lazily and refreshed before they expire.
struct SessionCredentials {
    source: CredentialSource,
    cached: tokio::sync::Mutex<Option<AwsCredentials>>,
}

impl SessionCredentials {
    async fn current(&self, transport: &AwsTransport) -> Result<AwsCredentials, AwsError> {
        if let CredentialSource::Static(c) = &self.source {
            return Ok(c.clone());
        }
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = match c.expires_at() {
                None => true,
                Some(at) => {
                    *at - chrono::Utc::now() > chrono::Duration::seconds(REFRESH_MARGIN_SECS)
                }
            };
            if fresh {
                return Ok(c.clone());
            }
        }
        let c = match &self.source {
            CredentialSource::Static(c) => c.clone(),
            CredentialSource::Chain => transport.default_chain().await?,
            CredentialSource::AssumeRole {
                role_arn,
                external_id,
            } => {
                let base = transport.default_chain().await?;
                transport
                    .assume_role(&base, role_arn, external_id.as_deref())
                    .await?
            }
        };
        *cached = Some(c.clone());
        Ok(c)
    }
}

struct SessionInner {
    transport: Arc<AwsTransport>,
    credentials: SessionCredentials,
    account_id: String,
    /// The caller's ARN, as GetCallerIdentity gave it.
    caller_arn: String,
    calls: AtomicU64,
    /// Answers of [`AwsSession::json_shared`] calls, by their arguments.
    shared: std::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Value>>>>,
}

/// One cloud account's credentials and identity on the shared transport. Cheap to clone;
/// clones share the call counter.
#[derive(Clone)]
pub struct AwsSession {
    inner: Arc<SessionInner>,
}

impl AwsSession {
    pub fn account_id(&self) -> &str {
        &self.inner.account_id
    }

    /// The ARN of the identity the session calls as (from GetCallerIdentity).
    pub fn caller_arn(&self) -> &str {
        &self.inner.caller_arn
    }

    /// Query protocol (EC2, IAM, RDS, STS): POST form Action=..&Version=..&params, signed.
    /// Returns xml_to_json of the response root (e.g. for IAM,
    /// {"ListUsersResult": {...}, "ResponseMetadata": ..}).
    pub async fn query(
        &self,
        service: &'static str,
        region: &str,
        action: &str,
        version: &str,
        params: &[(String, String)],
    ) -> Result<Value, AwsError> {
        let creds = self
            .inner
            .credentials
            .current(&self.inner.transport)
            .await?;
        self.inner
            .transport
            .dispatch_query(
                &creds,
                &self.inner.account_id,
                Some(&self.inner.calls),
                service,
                region,
                action,
                version,
                params,
            )
            .await
    }

    /// Dispatch one call with the session's current credentials, counted as its calls.
    async fn send(&self, call: &Call<'_>) -> Result<Bytes, AwsError> {
        let creds = self
            .inner
            .credentials
            .current(&self.inner.transport)
            .await?;
        self.inner
            .transport
            .dispatch(
                &creds,
                &self.inner.account_id,
                Some(&self.inner.calls),
                call,
            )
            .await
    }

    /// [`AwsSession::json`], answered once per session: a later (or concurrent) call with
    /// the same arguments shares the first successful answer. For reads that several walkers
    /// of one harvest need, such as CloudTrail's trail list and trail status.
    pub async fn json_shared(
        &self,
        service: &'static str,
        region: &str,
        target: &str,
        body: &Value,
    ) -> Result<Value, AwsError> {
        let key = format!("{service}\u{0}{region}\u{0}{target}\u{0}{body}");
        let cell = {
            let mut shared = self.inner.shared.lock().unwrap_or_else(|p| p.into_inner());
            shared.entry(key).or_default().clone()
        };
        cell.get_or_try_init(|| self.json(service, region, target, body))
            .await
            .cloned()
    }

    /// JSON 1.1 protocol (KMS "TrentService.ListKeys", CloudTrail
    /// "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.DescribeTrails"): POST with
    /// X-Amz-Target. Returns the answer's JSON (`null` for an empty body).
    pub async fn json(
        &self,
        service: &'static str,
        region: &str,
        target: &str,
        body: &Value,
    ) -> Result<Value, AwsError> {
        let payload = serde_json::to_vec(body)
            .map_err(|e| AwsError::Decode(format!("request body for {target}: {e}")))?;
        let call = Call {
            service,
            region,
            action: target.rsplit('.').next().unwrap_or(target).to_string(),
            protocol: Protocol::Json,
            method: "POST",
            path: "/",
            query: Vec::new(),
            headers: vec![
                ("content-type", "application/x-amz-json-1.1".to_string()),
                ("x-amz-target", target.to_string()),
            ],
            body: Some(payload),
        };
        let answer = self.send(&call).await?;
        if answer.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&answer)
            .map_err(|e| AwsError::Decode(format!("{service} {}: {e}", call.action)))
    }

    /// REST-XML (S3): GET path with query (e.g. path "/bucket", query [("acl","")]),
    /// path-style addressing, region for signing. Returns xml_to_json of the body
    /// (Value::Null for an empty body). A JSON body (GetBucketPolicy answers the policy
    /// document itself) is returned parsed as JSON.
    pub async fn rest_get(
        &self,
        service: &'static str,
        region: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, AwsError> {
        let mut action = format!("GET {path}");
        for (i, (k, _)) in query.iter().enumerate() {
            action.push(if i == 0 { '?' } else { '&' });
            action.push_str(k);
        }
        let call = Call {
            service,
            region,
            action,
            protocol: Protocol::RestXml,
            method: "GET",
            path,
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers: Vec::new(),
            body: None,
        };
        let answer = self.send(&call).await?;
        let trimmed = answer.trim_ascii_start();
        if trimmed.is_empty() {
            return Ok(Value::Null);
        }
        if trimmed.starts_with(b"{") {
            return serde_json::from_slice(trimmed)
                .map_err(|e| AwsError::Decode(format!("{service} {}: {e}", call.action)));
        }
        xml_to_json(&answer)
            .map_err(|e| AwsError::Decode(format!("{service} {}: {e}", call.action)))
    }

    /// API calls made through this session so far (each HTTP attempt counts).
    pub fn api_calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for AwsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSession")
            .field("account_id", &self.inner.account_id)
            .field("api_calls", &self.api_calls())
            .finish_non_exhaustive()
    }
}

/// Sign `call` for `endpoint` and turn it into a hyper request.
fn build_request(
    endpoint: &Endpoint,
    creds: &AwsCredentials,
    call: &Call<'_>,
    proxy: &ProxyConfig,
) -> Result<Request<Body>, AwsError> {
    let region = Region::Custom {
        name: endpoint.signing_region.clone(),
        endpoint: endpoint.url.clone(),
    };
    let mut signed = SignedRequest::new(call.method, call.service, &region, call.path);
    signed.scheme = Some(endpoint.scheme.clone());
    signed.set_hostname(Some(endpoint.authority.clone()));
    for (k, v) in &call.query {
        signed.add_param(k.as_str(), v.as_str());
    }
    for (name, value) in &call.headers {
        signed.add_header(*name, value);
    }
    if let Some(body) = &call.body {
        signed.set_payload(Some(body.clone()));
    }
    signed.sign(creds);

    let mut uri = format!(
        "{}://{}{}",
        endpoint.scheme,
        endpoint.authority,
        signed.canonical_uri()
    );
    if !signed.canonical_query_string().is_empty() {
        uri.push('?');
        uri.push_str(signed.canonical_query_string());
    }
    let uri: Uri = uri.parse().map_err(|e| {
        AwsError::Transport(format!("{} {}: bad uri: {e}", call.service, call.action))
    })?;
    let method = Method::from_bytes(call.method.as_bytes())
        .map_err(|e| AwsError::Transport(format!("bad method: {e}")))?;
    let mut builder = Request::builder().method(method).uri(uri.clone());
    for (name, values) in signed.headers() {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| AwsError::Transport(format!("bad header name: {e}")))?;
        for value in values {
            let mut value = HeaderValue::from_bytes(value)
                .map_err(|_| AwsError::Transport(format!("bad value for header {name}")))?;
            if name == hyper::header::AUTHORIZATION || name.as_str() == "x-amz-security-token" {
                value.set_sensitive(true);
            }
            builder = builder.header(name.clone(), value);
        }
    }
    if let Some(auth) = proxy.authorization_for(&uri) {
        builder = builder.header(hyper::header::PROXY_AUTHORIZATION, auth);
    }
    let body = match signed.payload.take() {
        Some(payload) => payload.into_body(),
        None => Body::empty(),
    };
    builder
        .body(body)
        .map_err(|e| AwsError::Transport(format!("bad request: {e}")))
}

/// The AWS error code and message of an error answer. Unparsable bodies (an HTML 500)
/// give code `Unknown` and the start of the body as the message.
fn parse_error(protocol: Protocol, headers: &hyper::HeaderMap, body: &[u8]) -> (String, String) {
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let parsed = match protocol {
        Protocol::Json => serde_json::from_slice::<Value>(body).ok().map(|v| {
            let code = v["__type"]
                .as_str()
                .map(str::to_string)
                .or_else(|| {
                    headers
                        .get("x-amzn-errortype")
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            let code = code.rsplit('#').next().unwrap_or_default();
            let code = code.split(':').next().unwrap_or_default().to_string();
            let message = v
                .get("message")
                .or_else(|| v.get("Message"))
                .map(str_of)
                .unwrap_or_default();
            (code, message)
        }),
        Protocol::Query | Protocol::RestXml => xml_to_json(body).ok().map(|v| {
            // EC2: <Response><Errors><Error>; IAM/RDS/STS: <ErrorResponse><Error>; S3: <Error>
            let error = list(&v["Errors"]["Error"])
                .first()
                .copied()
                .cloned()
                .or_else(|| v.get("Error").cloned())
                .unwrap_or(v);
            (str_of(&error["Code"]), str_of(&error["Message"]))
        }),
    };
    match parsed {
        Some((code, message)) if !code.is_empty() => (code, message),
        _ => {
            let raw = String::from_utf8_lossy(&body[..body.len().min(MAX_RAW_MESSAGE)])
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            ("Unknown".to_string(), raw)
        }
    }
}

/// An error and its sources, joined (hyper's top-level message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `application/x-www-form-urlencoded` value encoding (RFC 3986 unreserved kept).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Check an endpoint URL from `var`: http(s) scheme and a host; trailing `/` dropped.
fn validate_endpoint(var: &str, url: &str) -> Result<String, AwsError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| AwsError::Transport(format!("{var} is not a url")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(AwsError::Transport(format!(
                "{var} must start with http:// or https://"
            )))
        }
    }
    if uri.host().is_none() {
        return Err(AwsError::Transport(format!("{var} has no host")));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// A moto server for tests, and helpers that point a transport at it.
#[cfg(test)]
pub mod testsupport {
    use super::*;
    use std::process::{Child, Command, Stdio};

    /// A `python3 -m moto.server` on a free loopback port, killed on drop.
    /// `PALISADE_TEST_PYTHON` names the interpreter (default `python3`).
    pub struct MotoServer {
        child: Child,
        port: u16,
    }

    impl MotoServer {
        /// Start moto and wait until it accepts connections (panics when it cannot).
        pub fn start() -> MotoServer {
            let python =
                std::env::var("PALISADE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let child = Command::new(&python)
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {python} -m moto.server: {e}"));
            let mut server = MotoServer { child, port };
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return server;
                }
                if let Ok(Some(status)) = server.child.try_wait() {
                    panic!("moto server exited with {status}: is `moto[server]` installed for {python}?");
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "moto server did not listen on port {port} within 30 s"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }

        pub fn port(&self) -> u16 {
            self.port
        }

        /// `http://127.0.0.1:PORT`.
        pub fn endpoint(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        /// A transport whose every endpoint is this server, with no proxy.
        pub fn transport(&self) -> Arc<AwsTransport> {
            transport_to(&self.endpoint(), ProxyConfig::none(), test_settings())
        }

        /// A session with [`test_credentials`] on [`MotoServer::transport`].
        pub async fn session(&self) -> AwsSession {
            self.transport()
                .session(&test_credentials())
                .await
                .expect("moto session")
        }
    }

    impl Drop for MotoServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Default AWS settings with short backoffs and a high rate, for tests.
    pub fn test_settings() -> AwsSettings {
        let mut settings = crate::settings::Settings::defaults()
            .expect("default settings")
            .aws;
        settings.backoff_base_ms = 5;
        settings.backoff_cap_ms = 50;
        settings.requests_per_second = 10_000.0;
        settings.burst = 10_000;
        settings.connect_timeout_secs = 5;
        settings.request_timeout_secs = 30;
        settings
    }

    /// A transport with `AWS_ENDPOINT_URL` = `endpoint` and the given proxy rules.
    pub fn transport_to(
        endpoint: &str,
        proxy: ProxyConfig,
        settings: AwsSettings,
    ) -> Arc<AwsTransport> {
        let endpoint = endpoint.to_string();
        Arc::new(
            AwsTransport::with_vars(&settings, proxy, |var| {
                (var == "AWS_ENDPOINT_URL").then(|| endpoint.clone())
            })
            .expect("transport"),
        )
    }

    /// Static keys moto accepts.
    pub fn test_credentials() -> Credentials {
        Credentials::Keys {
            access_key_id: "testing".to_string(),
            secret_access_key: "testing".to_string(),
            session_token: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testsupport::*;
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[test]
    fn endpoints_resolve_from_vars_then_real_aws() {
        let settings = test_settings();
        let t = AwsTransport::with_vars(&settings, ProxyConfig::none(), |v| match v {
            "AWS_ENDPOINT_URL_S3" => Some("http://127.0.0.1:9000/".to_string()),
            _ => None,
        })
        .expect("transport");
        let s3 = t.endpoint("s3", "eu-west-1").expect("s3");
        assert_eq!(
            (s3.scheme.as_str(), s3.authority.as_str()),
            ("http", "127.0.0.1:9000")
        );
        assert_eq!(s3.signing_region, "eu-west-1");
        let ec2 = t.endpoint("ec2", "eu-west-1").expect("ec2");
        assert_eq!(ec2.url, "https://ec2.eu-west-1.amazonaws.com");
        let iam = t.endpoint("iam", "eu-west-1").expect("iam");
        assert_eq!(
            (iam.url.as_str(), iam.signing_region.as_str()),
            ("https://iam.amazonaws.com", "us-east-1")
        );
        let sts = t.endpoint("sts", "ap-south-1").expect("sts");
        assert_eq!(sts.signing_region, "us-east-1");

        let all = AwsTransport::with_vars(&settings, ProxyConfig::none(), |v| match v {
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:5000".to_string()),
            "AWS_ENDPOINT_URL_KMS" => Some("http://127.0.0.1:6000".to_string()),
            _ => None,
        })
        .expect("transport");
        assert_eq!(
            all.endpoint("rds", "us-west-2").expect("rds").authority,
            "127.0.0.1:5000"
        );
        assert_eq!(
            all.endpoint("kms", "us-west-2").expect("kms").authority,
            "127.0.0.1:6000"
        );

        let bad = AwsTransport::with_vars(&settings, ProxyConfig::none(), |v| {
            (v == "AWS_ENDPOINT_URL_EC2").then(|| "ftp://x".to_string())
        });
        assert!(matches!(bad, Err(AwsError::Transport(m)) if m.contains("AWS_ENDPOINT_URL_EC2")));
    }

    #[test]
    fn error_bodies_of_every_protocol() {
        let h = hyper::HeaderMap::new();
        let ec2 = b"<Response><Errors><Error><Code>InvalidVpcID.NotFound</Code><Message>nope</Message></Error></Errors><RequestID>x</RequestID></Response>";
        assert_eq!(
            parse_error(Protocol::Query, &h, ec2),
            ("InvalidVpcID.NotFound".into(), "nope".into())
        );
        let iam = b"<ErrorResponse><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>no user</Message></Error></ErrorResponse>";
        assert_eq!(parse_error(Protocol::Query, &h, iam).0, "NoSuchEntity");
        let s3 = b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucketPolicy</Code><Message>none</Message></Error>";
        assert_eq!(
            parse_error(Protocol::RestXml, &h, s3).0,
            "NoSuchBucketPolicy"
        );
        let json = br#"{"__type":"com.amazonaws.kms#NotFoundException","message":"gone"}"#;
        assert_eq!(
            parse_error(Protocol::Json, &h, json),
            ("NotFoundException".into(), "gone".into())
        );
        let json2 = br#"{"__type":"ThrottlingException","Message":"slow"}"#;
        assert_eq!(
            parse_error(Protocol::Json, &h, json2),
            ("ThrottlingException".into(), "slow".into())
        );
        let html = b"<html><body><h1>500 Internal Server Error</h1>";
        let (code, message) = parse_error(Protocol::Query, &h, html);
        assert_eq!(code, "Unknown");
        assert!(message.contains("500 Internal Server Error"), "{message}");
        assert!(is_retryable(500, &code));
    }

    #[test]
    fn form_encoding_is_strict() {
        assert_eq!(form_encode("a b&c=d/é~"), "a%20b%26c%3Dd%2F%C3%A9~");
    }

    #[tokio::test]
    async fn sts_ec2_kms_and_s3_against_moto() {
        let moto = MotoServer::start();
        let session = moto.session().await;
        assert_eq!(session.account_id(), "123456789012");
        assert_eq!(session.api_calls(), 1);

        let vpcs = session
            .query("ec2", "us-east-1", "DescribeVpcs", "2016-11-15", &[])
            .await
            .expect("DescribeVpcs");
        let vpcs = list(&vpcs["vpcSet"]);
        assert_eq!(vpcs.len(), 1, "moto's default vpc");
        assert!(vpcs[0]["vpcId"]
            .as_str()
            .is_some_and(|id| id.starts_with("vpc-")));
        let filtered = session
            .query(
                "ec2",
                "us-east-1",
                "DescribeVpcs",
                "2016-11-15",
                &[("VpcId.1".to_string(), "vpc-doesnotexist".to_string())],
            )
            .await;
        let err = filtered.expect_err("unknown vpc");
        assert_eq!(err.code(), Some("InvalidVpcID.NotFound"), "{err}");

        let created = session
            .json(
                "kms",
                "us-west-2",
                "TrentService.CreateKey",
                &serde_json::json!({"Description": "t"}),
            )
            .await
            .expect("CreateKey");
        let key_id = created["KeyMetadata"]["KeyId"]
            .as_str()
            .expect("key id")
            .to_string();
        let keys = session
            .json(
                "kms",
                "us-west-2",
                "TrentService.ListKeys",
                &serde_json::json!({}),
            )
            .await
            .expect("ListKeys");
        let listed: Vec<_> = list(&keys["Keys"])
            .iter()
            .map(|k| k["KeyId"].clone())
            .collect();
        assert_eq!(listed, vec![Value::String(key_id)]);
        let missing = session
            .json(
                "kms",
                "us-west-2",
                "TrentService.DescribeKey",
                &serde_json::json!({"KeyId": "nope"}),
            )
            .await
            .expect_err("unknown key");
        assert_eq!(missing.code(), Some("NotFoundException"), "{missing}");

        let iam = session
            .query(
                "iam",
                "global",
                "GetUser",
                "2010-05-08",
                &[("UserName".to_string(), "nobody".to_string())],
            )
            .await
            .expect_err("no such user");
        assert_eq!(iam.code(), Some("NoSuchEntity"), "{iam}");

        // seed a bucket with an unsigned PUT (moto does not check signatures)
        let client = hyper::Client::new();
        let put = Request::put(format!("{}/palisade-test-bucket", moto.endpoint()))
            .body(Body::empty())
            .expect("request");
        assert!(client
            .request(put)
            .await
            .expect("put bucket")
            .status()
            .is_success());
        let buckets = session
            .rest_get("s3", "us-east-1", "/", &[])
            .await
            .expect("ListBuckets");
        let names: Vec<_> = list(&buckets["Buckets"]["Bucket"])
            .iter()
            .map(|b| b["Name"].clone())
            .collect();
        assert_eq!(names, vec![Value::from("palisade-test-bucket")]);
        let acl = session
            .rest_get("s3", "us-east-1", "/palisade-test-bucket", &[("acl", "")])
            .await
            .expect("GetBucketAcl");
        let grants = list(&acl["AccessControlList"]["Grant"]);
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0]["Permission"], "FULL_CONTROL");
        assert_eq!(grants[0]["Grantee"]["type"], "CanonicalUser");
        let policy = session
            .rest_get(
                "s3",
                "us-east-1",
                "/palisade-test-bucket",
                &[("policy", "")],
            )
            .await
            .expect_err("no policy");
        assert_eq!(policy.code(), Some("NoSuchBucketPolicy"), "{policy}");
        assert!(matches!(policy, AwsError::Api { status: 404, .. }));

        // 1 identity + 2 ec2 + 3 kms + 1 iam + 3 s3
        assert_eq!(session.api_calls(), 10);
        assert!(
            crate::metrics::value(
                "palisade_aws_requests_total",
                &[("service", "kms"), ("outcome", "ok")]
            ) >= 2
        );
    }

    /// What a test server saw of one request.
    #[derive(Clone, Debug)]
    struct Seen {
        request_line: String,
        proxy_authorization: Option<String>,
    }

    /// A tiny HTTP server: answers the first `canned.len()` requests with those raw answers,
    /// forwards every later one to `127.0.0.1:upstream` (absolute-form request lines are
    /// rewritten to origin-form, as a forward proxy does) and records every request.
    async fn tiny_server(upstream: u16, canned: Vec<&'static str>) -> (u16, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let canned = Arc::new(Mutex::new(
            canned
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                let canned = canned.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(sock, upstream, record, canned).await;
                });
            }
        });
        (port, seen)
    }

    async fn serve_connection(
        mut sock: TcpStream,
        upstream: u16,
        record: Arc<Mutex<Vec<Seen>>>,
        canned: Arc<Mutex<std::collections::VecDeque<&'static str>>>,
    ) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        let mut length = 0usize;
        let mut proxy_authorization = None;
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "proxy-authorization" => {
                    proxy_authorization = Some(value.to_string());
                    continue;
                }
                "connection" => continue,
                _ => {}
            }
            headers.push(line.to_string());
        }
        while buf.len() < head_end + length {
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        record.lock().expect("record").push(Seen {
            request_line: request_line.clone(),
            proxy_authorization,
        });
        let answer = canned.lock().expect("canned").pop_front();
        if let Some(answer) = answer {
            sock.write_all(answer.as_bytes()).await?;
            return sock.shutdown().await;
        }
        let mut parts = request_line.splitn(3, ' ');
        let (method, target, version) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let origin_form = match target.strip_prefix("http://") {
            Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]).to_string(),
            None => target.to_string(),
        };
        let mut up = TcpStream::connect(("127.0.0.1", upstream)).await?;
        let mut out = format!("{method} {origin_form} {version}\r\n");
        for h in &headers {
            out.push_str(h);
            out.push_str("\r\n");
        }
        out.push_str("Connection: close\r\n\r\n");
        up.write_all(out.as_bytes()).await?;
        up.write_all(&buf[head_end..]).await?;
        let mut answer = Vec::new();
        up.read_to_end(&mut answer).await?;
        // make the client close too, so connections are never reused across tests' counts
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(answer.len(), |i| i + 2);
        let (answer_head, answer_rest) = answer.split_at(split);
        let answer_head: String = String::from_utf8_lossy(answer_head)
            .split("\r\n")
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .collect::<Vec<_>>()
            .join("\r\n");
        sock.write_all(answer_head.as_bytes()).await?;
        sock.write_all(b"Connection: close\r\n").await?;
        sock.write_all(answer_rest).await?;
        sock.shutdown().await
    }

    fn proxy_vars(vars: &[(&str, String)]) -> ProxyConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        ProxyConfig::from_vars(|k| vars.get(k).cloned()).expect("proxy config")
    }

    #[tokio::test]
    async fn requests_go_through_http_proxy_unless_no_proxy_names_the_host() {
        let moto = MotoServer::start();
        let (proxy_port, seen) = tiny_server(moto.port(), Vec::new()).await;
        let proxy_url = format!("http://palisade:pr0xy-s3cret@127.0.0.1:{proxy_port}");
        let proxied = transport_to(
            &moto.endpoint(),
            proxy_vars(&[("http_proxy", proxy_url.clone())]),
            test_settings(),
        );
        let session = proxied
            .session(&test_credentials())
            .await
            .expect("session via proxy");
        session
            .query("ec2", "us-east-1", "DescribeVpcs", "2016-11-15", &[])
            .await
            .expect("DescribeVpcs via proxy");
        let requests = seen.lock().expect("seen").clone();
        assert_eq!(requests.len(), 2, "{requests:?}");
        let expected_auth = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                "palisade:pr0xy-s3cret"
            )
        );
        for r in &requests {
            assert_eq!(
                r.request_line,
                format!("POST http://127.0.0.1:{}/ HTTP/1.1", moto.port()),
                "absolute-form through the proxy"
            );
            assert_eq!(
                r.proxy_authorization.as_deref(),
                Some(expected_auth.as_str())
            );
        }

        let bypassed = transport_to(
            &moto.endpoint(),
            proxy_vars(&[
                ("http_proxy", proxy_url),
                ("no_proxy", "localhost,127.0.0.1".to_string()),
            ]),
            test_settings(),
        );
        let direct = bypassed
            .session(&test_credentials())
            .await
            .expect("direct session");
        direct
            .query("ec2", "us-east-1", "DescribeVpcs", "2016-11-15", &[])
            .await
            .expect("DescribeVpcs direct");
        assert_eq!(
            seen.lock().expect("seen").len(),
            2,
            "no_proxy bypasses the proxy"
        );
    }

    const THROTTLED: &str = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/xml\r\nContent-Length: 120\r\nConnection: close\r\n\r\n<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>";
    const HTML_500: &str = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nContent-Length: 40\r\nConnection: close\r\n\r\n<html><body>Internal Error</body></html>";

    #[tokio::test]
    async fn throttling_and_html_500_are_retried_and_every_attempt_counts() {
        assert_eq!(THROTTLED.split("\r\n\r\n").nth(1).map(str::len), Some(120));
        assert_eq!(HTML_500.split("\r\n\r\n").nth(1).map(str::len), Some(40));
        let moto = MotoServer::start();
        let (shim_port, seen) =
            tiny_server(moto.port(), vec![THROTTLED, THROTTLED, HTML_500, THROTTLED]).await;
        let transport = transport_to(
            &format!("http://127.0.0.1:{shim_port}"),
            ProxyConfig::none(),
            test_settings(),
        );
        let session = transport
            .session(&test_credentials())
            .await
            .expect("session after retries");
        assert_eq!(session.account_id(), "123456789012");
        assert_eq!(session.api_calls(), 5);
        session
            .query("ec2", "us-east-1", "DescribeVpcs", "2016-11-15", &[])
            .await
            .expect("DescribeVpcs");
        assert_eq!(session.api_calls(), 6);
        assert_eq!(seen.lock().expect("seen").len(), 6);
    }

    #[tokio::test]
    async fn persistent_throttling_gives_up_after_max_attempts() {
        let moto = MotoServer::start();
        let session = moto.session().await;
        let (shim_port, seen) = tiny_server(moto.port(), vec![THROTTLED; 10]).await;
        let mut settings = test_settings();
        settings.max_attempts = 3;
        let shimmed = transport_to(
            &format!("http://127.0.0.1:{shim_port}"),
            ProxyConfig::none(),
            settings,
        );
        let err = shimmed
            .session(&test_credentials())
            .await
            .expect_err("throttled throughout");
        assert!(
            matches!(
                &err,
                AwsError::Throttled {
                    service: "sts",
                    attempts: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(seen.lock().expect("seen").len(), 3);
        drop(session);
    }

    #[tokio::test]
    async fn assume_role_yields_expiring_session_credentials() {
        let moto = MotoServer::start();
        let transport = moto.transport();
        let base = AwsCredentials::new("testing", "testing", None, None);
        let role_arn = "arn:aws:iam::210987654321:role/palisade-audit";
        let assumed = transport
            .assume_role(&base, role_arn, Some("ext-42"))
            .await
            .expect("assume role");
        assert_ne!(assumed.aws_access_key_id(), "testing");
        assert!(assumed.token().is_some());
        assert!(assumed
            .expires_at()
            .is_some_and(|at| at > chrono::Utc::now()));
        // the assumed credentials sign calls as the role's account
        let session = transport
            .session(&Credentials::Keys {
                access_key_id: assumed.aws_access_key_id().to_string(),
                secret_access_key: assumed.aws_secret_access_key().to_string(),
                session_token: assumed.token().clone(),
            })
            .await
            .expect("session with assumed credentials");
        assert_eq!(session.account_id(), "210987654321");
    }

    #[test]
    fn session_futures_are_send() {
        fn assert_send<T: Send>(_: T) {}
        let transport = transport_to("http://127.0.0.1:9", ProxyConfig::none(), test_settings());
        assert_send(transport.session(&test_credentials()));
        let _ = |s: AwsSession| {
            assert_send(async move {
                let _ = s.query("ec2", "r", "A", "v", &[]).await;
                let _ = s.json("kms", "r", "T", &Value::Null).await;
                let _ = s.rest_get("s3", "r", "/", &[]).await;
            })
        };
    }

    #[tokio::test]
    async fn default_chain_falls_back_to_instance_metadata_through_our_client() {
        // IMDSv2 stand-in: token, role name, role credentials.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let record = paths.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let line = head.lines().next().unwrap_or_default().to_string();
                let has_token = head
                    .to_ascii_lowercase()
                    .contains("x-aws-ec2-metadata-token: tok");
                record.lock().expect("paths").push(line.clone());
                let body = if line.starts_with("PUT /latest/api/token") {
                    "tok".to_string()
                } else if !has_token {
                    String::new()
                } else if line.starts_with("GET /latest/meta-data/iam/security-credentials/ ") {
                    "palisade-role\n".to_string()
                } else if line
                    .starts_with("GET /latest/meta-data/iam/security-credentials/palisade-role ")
                {
                    r#"{"Code":"Success","AccessKeyId":"AKIMDS","SecretAccessKey":"imds-secret","Token":"imds-token","Expiration":"2099-01-01T00:00:00Z"}"#.to_string()
                } else {
                    String::new()
                };
                let status = if body.is_empty() {
                    "404 Not Found"
                } else {
                    "200 OK"
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(answer.as_bytes()).await;
            }
        });
        let transport = AwsTransport::with_vars(&test_settings(), ProxyConfig::none(), |v| {
            (v == "AWS_EC2_METADATA_SERVICE_ENDPOINT").then(|| format!("http://127.0.0.1:{port}"))
        })
        .expect("transport");
        let creds = transport
            .imds_credentials()
            .await
            .expect("imds credentials");
        assert_eq!(creds.aws_access_key_id(), "AKIMDS");
        assert_eq!(creds.aws_secret_access_key(), "imds-secret");
        assert_eq!(creds.token().as_deref(), Some("imds-token"));
        assert!(creds.expires_at().is_some());
        let paths = paths.lock().expect("paths").clone();
        assert_eq!(paths.len(), 3, "{paths:?}");
        assert!(!format!("{creds:?}").contains("imds-secret"));
    }
}
