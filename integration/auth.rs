//! Users, sessions and API keys against the real binary: the first run's `admin` and its
//! password file, `palisade user add` reading the password from stdin, a login over HTTP
//! with the session cookie, CSRF enforced on a mutating call, and an API key made through
//! the session that then works on its own, within its role.

use std::io::Write;
use std::process::Stdio;

use serde_json::{json, Value};

use crate::support::daemon::Daemon;
use crate::support::palisade_command;

/// (status, Set-Cookie, JSON body or null) of one request with the given headers.
fn call(
    daemon: &Daemon,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Option<String>, Value) {
    let mut req = ureq::request(method, &daemon.url(path));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let res = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}\n{}", daemon.logs()),
    };
    let status = resp.status();
    let cookie = resp.header("set-cookie").map(str::to_string);
    let text = resp.into_string().unwrap_or_default();
    (
        status,
        cookie,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Run `palisade user ...` in the daemon's directory (same store), `stdin` piped in.
fn palisade_user(daemon: &Daemon, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = palisade_command()
        .current_dir(daemon.dir())
        .env("STAGE", "test")
        .arg("user")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn palisade user");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write the password");
    child.wait_with_output().expect("palisade user")
}

#[test]
fn a_user_added_on_the_command_line_logs_in_with_csrf_and_makes_an_api_key() {
    use std::os::unix::fs::PermissionsExt;
    // no bootstrap key: the first run creates `admin` with a password in a file
    let daemon = Daemon::start(&[("PALISADE__AUTH__BOOTSTRAP_API_KEY".into(), String::new())]);
    let file = daemon.dir().join("data/initial-admin-password");
    let mode = std::fs::metadata(&file)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", file.display(), daemon.logs()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let admin_password = std::fs::read_to_string(&file)
        .expect("read")
        .trim()
        .to_string();
    let logs = daemon.logs();
    assert!(logs.contains("data/initial-admin-password"), "{logs}");
    assert!(
        !logs.contains(&admin_password),
        "the password is never logged"
    );

    // without credentials: 401
    let (status, _, body) = call(&daemon, "GET", "/v2/clouds", &[], None);
    assert_eq!(
        (status, body["code"].clone()),
        (401, json!("unauthenticated"))
    );

    let added = palisade_user(
        &daemon,
        &["add", "olga", "--role", "operator"],
        "olga's passphrase\n",
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let again = palisade_user(
        &daemon,
        &["add", "olga", "--role", "viewer"],
        "olga's passphrase\n",
    );
    assert!(!again.status.success(), "a taken name is refused");
    let listed = palisade_user(&daemon, &["list"], "");
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success());
    assert!(
        out.lines()
            .any(|l| l.starts_with("olga ") && l.contains("operator")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("admin ") && l.contains("admin")),
        "{out}"
    );
    assert!(
        !out.contains("passphrase") && !out.contains("argon2"),
        "{out}"
    );

    let login = |user: &str, password: &str| {
        call(
            &daemon,
            "POST",
            "/v2/public/user/login",
            &[],
            Some(json!({"username": user, "password": password})),
        )
    };
    let (status, _, body) = login("olga", "wrong");
    assert_eq!(
        (status, body["code"].clone()),
        (401, json!("invalid_credentials"))
    );
    let (status, set_cookie, body) = login("olga", "olga's passphrase");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "operator");
    let set_cookie = set_cookie.expect("a session cookie");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    let csrf = body["csrf_token"].as_str().expect("csrf").to_string();

    let (status, _, me) = call(&daemon, "GET", "/v2/user/me", &[("Cookie", &cookie)], None);
    assert_eq!(
        (status, me["user"].clone(), me["via"].clone()),
        (200, json!("olga"), json!("session"))
    );

    let new_key = json!({"name": "olga's automation"});
    let (status, _, body) = call(
        &daemon,
        "POST",
        "/v2/api-keys",
        &[("Cookie", &cookie)],
        Some(new_key.clone()),
    );
    assert_eq!(
        (status, body["code"].clone()),
        (403, json!("csrf_rejected"))
    );
    let (status, _, made) = call(
        &daemon,
        "POST",
        "/v2/api-keys",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        Some(new_key),
    );
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().expect("the key").to_string();

    // the key works on its own, within olga's role
    let (status, _, clouds) = call(&daemon, "GET", "/v2/clouds", &[("Api-Key", &key)], None);
    assert_eq!(status, 200, "{clouds}");
    let (status, _, body) = call(
        &daemon,
        "POST",
        "/v2/cluster/reload",
        &[("Api-Key", &key)],
        None,
    );
    assert_eq!((status, body["code"].clone()), (403, json!("forbidden")));

    // the first admin logs in with the generated password and reads the audit log
    let (status, set_cookie, _) = login("admin", &admin_password);
    assert_eq!(status, 200);
    let admin_cookie = set_cookie
        .expect("cookie")
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    let (status, _, audit) = call(
        &daemon,
        "GET",
        "/v2/audit",
        &[("Cookie", &admin_cookie)],
        None,
    );
    assert_eq!(status, 200, "{audit}");
    let actions: Vec<(String, u64)> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            (
                format!(
                    "{} {}",
                    e["principal"].as_str().unwrap_or(""),
                    e["action"].as_str().unwrap_or("")
                ),
                e["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        actions.contains(&("olga POST /v2/api-keys".to_string(), 201)),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("olga POST /v2/api-keys".to_string(), 403)),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("olga POST /v2/public/user/login".to_string(), 401)),
        "{actions:?}"
    );
    assert!(
        audit.to_string().contains("127.0.0.1"),
        "the client address: {audit}"
    );
}
