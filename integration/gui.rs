//! The web GUI end to end in headless Chromium (through chromedriver's WebDriver API): a
//! user made with `palisade user add` signs in, adds a cloud through the form, harvests
//! it with the dashboard's button, and sees on the dashboard, on an insight's page, in the
//! resource browser and on one resource exactly what the API and the seeded estate say.
//! The dashboard's screenshot is saved to `target/test-artifacts/dashboard.png` (and one
//! of each other page beside it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::daemon::Daemon;
use crate::support::moto::Moto;
use crate::support::webdriver::Browser;
use crate::support::{aws_env, root};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Where the screenshot goes: `$CARGO_TARGET_DIR/test-artifacts`, else the workspace's
/// `target/test-artifacts`.
fn artifacts() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("test-artifacts")
}

/// `{attribute value: number}` over the elements matching `css`, read in the page.
fn numbers_by(
    browser: &Browser,
    css: &str,
    key_attr: &str,
    value_attr: &str,
) -> BTreeMap<String, u64> {
    let v = browser.run(
        "const [css, k, v] = arguments; const out = {}; \
         for (const e of document.querySelectorAll(css)) { \
           const x = e.querySelector(`[${v}]`) || e; \
           out[e.getAttribute(k)] = Number(x.getAttribute(v)); } \
         return out;",
        json!([css, key_attr, value_attr]),
    );
    serde_json::from_value(v).unwrap_or_default()
}

#[test]
fn the_gui_signs_in_adds_a_cloud_harvests_it_and_shows_what_the_api_says() {
    let moto = Moto::start();
    let expected = moto.seed(&["us-east-1"], &[]);
    let daemon = Daemon::start(&aws_env(&moto.endpoint()));
    daemon.add_user("gina", "operator", "gina's long passphrase");
    let browser = Browser::start();

    // The root redirects to the app, which asks for a sign-in; a wrong password is refused.
    browser.goto(&daemon.url("/"));
    let user = browser.wait("#login-form #username", secs(10));
    assert!(browser.url().contains("/ui/"), "{}", browser.url());
    let pass = browser.wait("#password", secs(1));
    browser.type_into(&user, "gina");
    browser.type_into(&pass, "not the password");
    browser.click(&browser.wait("#sign-in", secs(1)));
    browser.wait_until(
        "the refusal is shown",
        "const e = document.querySelector('.form-error'); return e && !e.hidden && e.textContent;",
        secs(10),
    );
    browser.screenshot(&artifacts().join("sign-in.png"));
    browser.type_into(&pass, "gina's long passphrase");
    browser.click(&browser.wait("#sign-in", secs(1)));
    browser.wait("#tile-clouds", secs(10));
    assert_eq!(browser.text(&browser.wait("#who-name", secs(1))), "gina");

    // Add a cloud through the form: access keys, moto's test keys.
    browser.click(&browser.wait("a[data-nav=new-cloud]", secs(5)));
    let name = browser.wait("#cloud-form #cloud-name", secs(10));
    browser.type_into(&name, "Moto <estate> & co");
    browser.type_into(&browser.wait("#regions", secs(1)), "us-east-1");
    browser.select("#credential-kind", "keys");
    browser.type_into(&browser.wait("#access-key-id", secs(1)), "testing");
    browser.type_into(
        &browser.wait("#secret-access-key", secs(1)),
        "testing-secret-value",
    );
    browser.screenshot(&artifacts().join("new-cloud.png"));
    browser.click(&browser.wait("#create-cloud", secs(1)));
    let row = browser.wait("tr[data-cloud-row]", secs(10));
    let clouds = daemon.get("/v2/clouds");
    assert_eq!(clouds["total"], 1, "{clouds}");
    let cloud = &clouds["items"][0];
    assert_eq!(cloud["name"], "Moto <estate> & co");
    assert_eq!(cloud["regions"], json!(["us-east-1"]));
    assert_eq!(cloud["credentials"]["kind"], "keys");
    let id = cloud["id"].as_str().expect("cloud id").to_string();
    // the name is shown as text, not parsed as markup
    assert!(browser.text(&row).contains("Moto <estate> & co"));
    assert!(
        browser.page_text().contains("added"),
        "the flash message: {}",
        browser.page_text()
    );

    // Harvest it with the button; the status cell follows the job until it is done.
    browser.click(&browser.wait(&format!("button[data-harvest=\"{id}\"]"), secs(1)));
    let job_id = browser.wait_until(
        "the harvest finishes",
        "const j = document.querySelector('.harvest-status [data-state]'); \
         return j && j.dataset.state === 'done' && j.dataset.job;",
        secs(90),
    );
    let job = daemon.get(&format!("/v2/jobs/{}", job_id.as_str().unwrap_or_default()));
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["priority"], "p0");
    daemon.wait_idle(secs(60)); // the compliance job that follows the harvest

    // The dashboard, refreshed: resources per type and open findings per insight.
    browser.click(&browser.wait("#refresh", secs(1)));
    browser.wait_until(
        "the dashboard shows findings",
        "return document.querySelector('#findings-by-insight');",
        secs(10),
    );
    let want_types: BTreeMap<String, u64> = expected
        .types
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    let want_insights: BTreeMap<String, u64> = expected
        .insights
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    assert!(!want_insights.is_empty(), "the estate has findings");
    let shown_types = browser.run(
        "const out = {}; for (const c of document.querySelectorAll('#clouds a.chip')) \
         out[c.dataset.type] = Number(c.querySelector('.chip-count').textContent.replace(/,/g, '')); \
         return out;",
        json!([]),
    );
    let shown_types: BTreeMap<String, u64> =
        serde_json::from_value(shown_types).expect("type counts");
    assert_eq!(
        shown_types, want_types,
        "resources per type on the dashboard"
    );
    let total: u64 = want_types.values().sum();
    let tile = browser.text(&browser.wait("#tile-resources .tile-value", secs(1)));
    assert_eq!(tile.replace(',', ""), total.to_string());
    let shown_insights = numbers_by(
        &browser,
        "#findings-by-insight tr[data-insight]",
        "data-insight",
        "data-open",
    );
    assert_eq!(
        shown_insights, want_insights,
        "open findings per insight on the dashboard"
    );
    let api_open: BTreeMap<String, u64> = daemon.get("/v2/insights")["items"]
        .as_array()
        .expect("insights")
        .iter()
        .filter(|i| i["open_findings"].as_u64().unwrap_or(0) > 0)
        .map(|i| {
            (
                i["id"].as_str().unwrap_or_default().to_string(),
                i["open_findings"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(shown_insights, api_open, "the dashboard matches the API");
    let open_total: u64 = want_insights.values().sum();
    let tile = browser.text(&browser.wait("#tile-findings .tile-value", secs(1)));
    assert_eq!(tile.replace(',', ""), open_total.to_string());
    let last = browser.text(&browser.wait(".harvest-status", secs(1)));
    assert!(last.contains("done"), "the last harvest is known: {last}");
    assert!(browser.all("#queues tr[data-priority]").len() == 3);
    let nodes = browser.text(&browser.wait("#nodes", secs(1)));
    let node = daemon.get("/healthz")["node"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(nodes.contains(&node), "this node is listed: {nodes}");

    let height = browser.run("return document.documentElement.scrollHeight;", json!([]));
    browser.resize(
        1440,
        height.as_u64().unwrap_or(1000).clamp(800, 4000) as u32 + 140,
    );
    let shot = artifacts().join("dashboard.png");
    browser.screenshot(&shot);
    eprintln!("dashboard screenshot: {}", shot.display());

    // An insight's page: its open findings, paged by the server.
    let (insight, n) = want_insights
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(k, n)| (k.clone(), *n))
        .expect("an insight with findings");
    browser.click(&browser.wait(
        &format!("#findings-by-insight tr[data-insight=\"{insight}\"] a"),
        secs(1),
    ));
    browser.wait("#insight-findings", secs(10));
    let open = browser.run(
        "return Number(document.querySelector('#insight-open').dataset.open);",
        json!([]),
    );
    assert_eq!(open.as_u64(), Some(n), "{insight}");
    let total = browser.run(
        "return Number(document.querySelector('.pager-range').dataset.total);",
        json!([]),
    );
    assert_eq!(total.as_u64(), Some(n), "{insight}: the page's total");
    browser.screenshot(&artifacts().join("insight.png"));
    let rows = browser.all("#insight-findings tbody tr");
    assert_eq!(rows.len() as u64, n.min(50), "one page of rows");

    // One resource from it: properties and the finding that brought us here.
    let uid = browser.run(
        "return document.querySelector('#insight-findings tbody tr').dataset.uid;",
        json!([]),
    );
    let uid = uid.as_str().expect("a uid").to_string();
    browser.click(&browser.wait("#insight-findings tbody tr a", secs(1)));
    let props = browser.wait("#properties", secs(10));
    let shown: Value = serde_json::from_str(&browser.text(&props)).expect("pretty JSON");
    let api = daemon.get(&format!("/v2/resources/{uid}"));
    assert_eq!(shown, api["properties"], "the resource's properties");
    browser.wait(
        &format!("#resource-findings tr[data-finding=\"{insight}\"]"),
        secs(1),
    );
    assert!(browser.url().ends_with(&format!("#/resources/{uid}")));
    browser.screenshot(&artifacts().join("resource.png"));

    // The resource browser: a filter and a second page, from the server.
    let (rtype, count) = want_types
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(k, n)| (k.clone(), *n))
        .expect("a type");
    browser.goto(&daemon.url(&format!("/ui/#/resources?type={rtype}&limit=25")));
    browser.wait("#resources", secs(10));
    let total = browser.run(
        "return Number(document.querySelector('.pager-range').dataset.total);",
        json!([]),
    );
    assert_eq!(total.as_u64(), Some(count), "{rtype}");
    assert_eq!(
        browser.all("#resources tbody tr").len() as u64,
        count.min(25)
    );
    if count > 25 {
        browser.click(&browser.wait("button[data-page=next]", secs(1)));
        browser.wait_until(
            "the second page",
            "return location.hash.includes('offset=25') && document.querySelector('#resources');",
            secs(10),
        );
        let range = browser.text(&browser.wait(".pager-range", secs(1)));
        assert!(range.starts_with("26–"), "{range}");
    }
    browser.screenshot(&artifacts().join("resources.png"));

    // The insight catalog: every insight, with the same open counts.
    browser.click(&browser.wait("a[data-nav=insights]", secs(1)));
    browser.wait("#insights", secs(10));
    let catalog = daemon.get("/v2/insights");
    assert_eq!(
        browser.all("#insights tr[data-insight]").len() as u64,
        catalog["total"].as_u64().unwrap_or(0)
    );
    let listed = numbers_by(
        &browser,
        "#insights tr[data-insight]",
        "data-insight",
        "data-open",
    );
    let listed: BTreeMap<String, u64> = listed.into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(listed, want_insights, "open findings on the insights page");

    // Signing out ends the session: the app is back at the sign-in page and stays there.
    browser.click(&browser.wait("#sign-out", secs(1)));
    browser.wait("#login-form", secs(10));
    browser.goto(&daemon.url("/ui/#/insights"));
    browser.wait("#login-form", secs(10));
    let logs = daemon.logs();
    assert!(
        !logs.contains("testing-secret-value"),
        "the secret is never logged"
    );
    assert!(!logs.contains("gina's long passphrase"));
}
