//! Every payload against a golden file, and against the payload shape its service documents
//! (Slack Block Kit limits, Feishu's `post` and signature, DingTalk's `markdown` and signed
//! URL, WeCom's `markdown` and 4096-byte cap, Alertmanager's postable alerts). Signatures are
//! checked against values computed independently (Python's `hmac` module) for the same input.
//!
//! Regenerate the golden files after an intended change:
//! `UPDATE_GOLDEN=1 cargo test -p stallwatch-collector --lib alerts::notifiers`, then review.

use std::path::PathBuf;

use serde_json::Value;

use super::fixtures::{NOW, message, resolved};
use super::*;
use crate::alerts::incidents::{Incident, Incidents, Retired};

const SECRET: &str = "SECtest-secret";

fn golden(file: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/alerts").join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
    assert!(
        expected == actual,
        "{} differs; if intended, rerun with UPDATE_GOLDEN=1 and review the diff. Actual:\n{actual}",
        path.display()
    );
}

/// The request as a golden file shows it: URL, headers, blank line, body.
fn render(r: &Request) -> String {
    let mut out = format!("POST {}\n", r.url);
    for (k, v) in &r.headers {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out.push('\n');
    out.push_str(std::str::from_utf8(&r.body).unwrap());
    out.push('\n');
    out
}

fn json(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn generic_is_signed_over_timestamp_and_body() {
    let r = generic::request("https://hooks.example/stallwatch", SECRET, &message(), NOW);
    golden("generic.txt", &render(&r));
    let body = json(&r);
    assert_eq!(body["status"], "firing");
    assert_eq!(body["change"], "escalated");
    assert_eq!(body["incident"]["severity"], "P1");
    assert_eq!(body["incident"]["previous_severity"], "P2");
    assert_eq!(body["incident"]["labels"]["region"], "sea");
    assert_eq!(body["incident"]["evidence"][0]["limit"], 0.01);
    assert_eq!(r.headers[0], ("X-Stallwatch-Timestamp".into(), "1793564045".into()));
    // python3 -c 'import hmac,hashlib,sys; b=open("generic.txt","rb").read().split(b"\n\n",1)[1][:-1];
    //   print(hmac.new(b"SECtest-secret", b"1793564045."+b, hashlib.sha256).hexdigest())'
    assert_eq!(
        r.headers[1].1,
        format!("sha256={}", include_str!("../../../tests/golden/alerts/generic.sig").trim())
    );
    let resolved = generic::request("https://hooks.example/stallwatch", SECRET, &resolved(), NOW);
    golden("generic-resolved.txt", &render(&resolved));
    assert_eq!(json(&resolved)["status"], "resolved");
}

#[test]
fn slack_follows_block_kit_limits_and_escapes_markup() {
    let r = slack::request("https://hooks.slack.com/services/T0/B0/XXXX", &message(), NOW);
    golden("slack.txt", &render(&r));
    let body = json(&r);
    assert!(body["text"].as_str().unwrap().contains("viewers stalling"));
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(
        blocks.iter().map(|b| b["type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["header", "section", "context"]
    );
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= slack::HEADER_MAX);
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    let section = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(section.chars().count() <= slack::SECTION_MAX);
    assert!(
        section.contains("&lt;&amp;&gt;") && !section.contains("<&>"),
        "markup escaped: {section}"
    );
    assert!(section.contains("*Evidence:* [threshold]"));
    let context = blocks[2]["elements"][0]["text"].as_str().unwrap();
    assert_eq!(context, "<https://runbooks.example/stalls.md|Runbook> · incident #42");
}

#[test]
fn feishu_posts_rich_text_signed_as_documented() {
    let r = feishu::request(
        "https://open.feishu.cn/open-apis/bot/v2/hook/xxx",
        Some(SECRET),
        &message(),
        NOW,
    );
    golden("feishu.txt", &render(&r));
    let body = json(&r);
    assert_eq!(body["msg_type"], "post");
    let post = &body["content"]["post"]["zh_cn"];
    assert!(post["title"].as_str().unwrap().starts_with("[P1 (was P2)]"));
    for line in post["content"].as_array().unwrap() {
        for element in line.as_array().unwrap() {
            match element["tag"].as_str().unwrap() {
                "text" => assert!(element["text"].is_string()),
                "a" => assert!(element["text"].is_string() && element["href"].is_string()),
                other => panic!("tag {other} is not one a custom bot takes"),
            }
        }
    }
    assert!(r.body.len() <= feishu::BODY_MAX);
    assert_eq!(body["timestamp"], "1793564045", "seconds, as a string");
    // python3 -c 'import hmac,hashlib,base64; k=b"1793564045\nSECtest-secret";
    //   print(base64.b64encode(hmac.new(k, b"", hashlib.sha256).digest()).decode())'
    assert_eq!(body["sign"], "wAzfstwIXVQ5db5L98mQGfW6Lbk9XAoK3rX7mUHNBTY=");
    let unsigned = json(&feishu::request("https://x.example/h", None, &message(), NOW));
    assert!(unsigned.get("sign").is_none() && unsigned.get("timestamp").is_none());
}

#[test]
fn dingtalk_sends_markdown_to_a_signed_url() {
    let r = dingtalk::request(
        "https://oapi.dingtalk.com/robot/send?access_token=abc",
        Some(SECRET),
        &message(),
        NOW,
    );
    golden("dingtalk.txt", &render(&r));
    let body = json(&r);
    assert_eq!(body["msgtype"], "markdown");
    assert!(body["markdown"]["title"].is_string());
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("#### [P1 (was P2)]")
            && text.contains("[Runbook](https://runbooks.example/stalls.md)")
    );
    assert!(text.contains("Stallwatch"), "the keyword a robot's keyword security can match");
    // python3 -c 'import hmac,hashlib,base64,urllib.parse; s=b"SECtest-secret";
    //   print(urllib.parse.quote_plus(base64.b64encode(hmac.new(s, b"1793564045000\n"+s, hashlib.sha256).digest())))'
    assert_eq!(
        r.url,
        "https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1793564045000&sign=C%2BaHRbaYfDi2vXQtw1vQgctk1v2%2B0NPCtCyID%2Bso34w%3D"
    );
}

#[test]
fn wecom_sends_markdown_within_4096_bytes() {
    let r =
        wecom::request("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc", &message(), NOW);
    golden("wecom.txt", &render(&r));
    let body = json(&r);
    assert_eq!(body["msgtype"], "markdown");
    let content = body["markdown"]["content"].as_str().unwrap();
    assert!(content.len() <= wecom::CONTENT_MAX);
    assert!(content.starts_with("### <font color=\"warning\">"));
    let mut long = message();
    long.evidence = (0..200).map(|_| long.evidence[0].clone()).collect();
    let content = json(&wecom::request("https://x.example", &long, NOW))["markdown"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(content.len() <= wecom::CONTENT_MAX && content.ends_with("[...]"), "{}", content.len());
}

#[test]
fn alertmanager_gets_the_open_alert_and_the_severity_it_left() {
    let m = message();
    let incident = Incident {
        id: 42,
        alert: m.alert,
        scope: m.scope.clone(),
        severity: Severity::P1,
        peak: Severity::P1,
        status: Status::Open,
        opened_unix_ms: m.opened_unix_ms,
        severity_since_unix_ms: NOW - 60_000,
        resolved_unix_ms: None,
        resolution: None,
        updated_unix_ms: NOW,
        methods: vec![crate::alerts::Method::Threshold, crate::alerts::Method::Trend],
        evidence: m.evidence.clone(),
        summary: m.summary.clone(),
        clear_since_unix_ms: None,
        lower_since: None,
        no_data_since_unix_ms: None,
        retired: vec![Retired {
            severity: Severity::P2,
            since_unix_ms: m.opened_unix_ms,
            until_unix_ms: NOW - 60_000,
        }],
        changes: Vec::new(),
    };
    let incidents = Incidents { next_id: 43, all: [(42, incident)].into() };
    let options = alertmanager::Options {
        ends_at_after_ms: 240_000,
        runbook_template: "https://runbooks.example/{runbook}.md".into(),
        external_url: Some("https://stallwatch.example".into()),
    };
    let alerts = alertmanager::alerts(&incidents, NOW, &options);
    golden("alertmanager.json", &serde_json::to_string_pretty(&alerts).unwrap());
    assert_eq!(alerts.len(), 2);
    let (open, left) = (&alerts[0], &alerts[1]);
    assert_eq!(open["labels"]["severity"], "P1");
    assert_eq!(open["labels"]["alertname"], "StallwatchStalls");
    assert_eq!(open["labels"]["source"], "stallwatch");
    assert_eq!(open["startsAt"], "2026-11-01T20:13:05.000Z");
    assert_eq!(open["endsAt"], "2026-11-01T20:18:05.000Z", "4 minutes ahead");
    assert_eq!(left["labels"]["severity"], "P2");
    assert_eq!(left["endsAt"], "2026-11-01T20:13:05.000Z", "the P2 alert ended when it escalated");
    for a in &alerts {
        // Alertmanager's postableAlert: labels (required) and annotations are string maps.
        for part in ["labels", "annotations"] {
            assert!(a[part].as_object().unwrap().values().all(Value::is_string), "{part}");
        }
        assert_eq!(a["generatorURL"], "https://stallwatch.example/api/v1/alerts");
    }
    // Long after, the left severity is no longer sent.
    assert_eq!(alertmanager::alerts(&incidents, NOW + 600_000, &options).len(), 1);
}
