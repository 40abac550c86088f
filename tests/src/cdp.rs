//! A small Chrome DevTools Protocol client over a hand-written WebSocket (RFC 6455 client
//! side: text frames, masking, ping/pong, fragmented messages), enough to load a page in
//! headless Chromium, record every network request, console error and exception, and take a
//! screenshot and a PDF. Shared by the report test (`collector/tests/reports.rs`) and the web
//! UI test (`e2e/webui.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Where Debian installs Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// What loading a page showed.
#[derive(Debug, Default)]
pub struct PageLoad {
    /// URLs of every request the page made, the document itself included.
    pub requests: Vec<String>,
    /// Console errors, uncaught exceptions and error log entries.
    pub errors: Vec<String>,
}

/// A headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    ws: WebSocket,
    session: String,
    next_id: u64,
    events: Vec<Value>,
    /// The browser's profile directory, removed with the browser.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium at `binary` with a fresh profile and opens a blank page.
    pub fn start(binary: &Path) -> Browser {
        let profile = crate::scratch_dir("chromium");
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Chromium prints the browser's WebSocket address on stderr.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium printed its DevTools address");
        let ws = WebSocket::connect(&url);
        ws.stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut browser = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached =
            browser.call("Target.attachToTarget", json!({"targetId": target_id, "flatten": true}));
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Page", "Network", "Runtime", "Log"] {
            browser.call(&format!("{domain}.enable"), json!({}));
        }
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser
    }

    /// Sends a command (to the page once attached) and waits for its answer, keeping the
    /// events that arrive meanwhile.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.ws.send(&message.to_string());
        loop {
            let reply: Value = serde_json::from_str(&self.ws.receive()).expect("CDP sends JSON");
            if reply["id"] == json!(id) {
                assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                return reply["result"].clone();
            }
            if reply.get("method").is_some() {
                self.events.push(reply);
            }
        }
    }

    /// Loads `url`, waits for its load event and a moment after, and reports what it did.
    pub fn load(&mut self, url: &str) -> PageLoad {
        self.events.clear();
        self.call("Page.navigate", json!({"url": url}));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.events.iter().any(|e| e["method"] == "Page.loadEventFired") {
            assert!(Instant::now() < deadline, "no load event for {url}");
            let event: Value = serde_json::from_str(&self.ws.receive()).unwrap();
            if event.get("method").is_some() {
                self.events.push(event);
            }
        }
        // Anything a page does after its load event (timers, lazy loads) would need scripts,
        // which the reports do not have; a round trip still collects what is already queued.
        self.call("Runtime.evaluate", json!({"expression": "1"}));
        let mut out = PageLoad::default();
        for e in &self.events {
            let p = &e["params"];
            match e["method"].as_str().unwrap_or("") {
                "Network.requestWillBeSent" => {
                    out.requests.push(p["request"]["url"].as_str().unwrap_or("").to_owned())
                }
                "Runtime.consoleAPICalled" if p["type"] == "error" || p["type"] == "assert" => {
                    out.errors.push(format!("console.{}: {}", p["type"], p["args"]))
                }
                "Runtime.exceptionThrown" => {
                    out.errors.push(format!("exception: {}", p["exceptionDetails"]))
                }
                "Log.entryAdded" if p["entry"]["level"] == "error" => {
                    out.errors.push(format!("log: {}", p["entry"]["text"]))
                }
                _ => {}
            }
        }
        out
    }

    /// The value of a JavaScript `expression` in the loaded page (the test's probe: the
    /// pages themselves have no scripts).
    pub fn eval(&mut self, expression: &str) -> Value {
        let out =
            self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true}));
        assert!(out.get("exceptionDetails").is_none(), "{expression} failed: {out}");
        out["result"]["value"].clone()
    }

    /// A PNG of the whole page.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let metrics = self.call("Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true, "clip": {
                "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}),
        );
        base64(shot["data"].as_str().unwrap())
    }

    /// The page printed to A4 PDF, as a reader would print it.
    pub fn pdf(&mut self) -> Vec<u8> {
        let pdf = self
            .call("Page.printToPDF", json!({"printBackground": true, "preferCSSPageSize": true}));
        base64(pdf["data"].as_str().unwrap())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A value that differs between calls and processes (profile names, masking keys).
fn unique() -> u128 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()) << 32
        | u128::from(n) << 16
        | u128::from(std::process::id() & 0xffff)
}

fn base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut value = [0u8; 256];
    for (i, &c) in ALPHABET.iter().enumerate() {
        value[usize::from(c)] = i as u8;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text.as_bytes().iter().filter(|&&c| c != b'=') {
        acc = (acc << 6) | u32::from(value[usize::from(c)]);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The client side of a WebSocket.
struct WebSocket {
    stream: TcpStream,
}

impl WebSocket {
    fn connect(url: &str) -> WebSocket {
        let rest = url.strip_prefix("ws://").expect("a ws:// address");
        let (host, path) = rest.split_once('/').unwrap();
        let mut stream = TcpStream::connect(host).expect("connect to chromium");
        write!(
            stream,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: c3RhbGx3YXRjaC1yZXBvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "websocket upgrade refused: {head}");
        WebSocket { stream }
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= usize::from(u16::MAX) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = (unique() as u32).to_be_bytes();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    fn send(&mut self, text: &str) {
        self.send_frame(0x1, text.as_bytes());
    }

    /// The next text message, answering pings on the way.
    fn receive(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).expect("a websocket frame from chromium");
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).unwrap();
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).unwrap();
                len = u64::from_be_bytes(b);
            }
            let mut mask = [0u8; 4];
            if head[1] & 0x80 != 0 {
                self.stream.read_exact(&mut mask).unwrap();
            }
            let mut payload = vec![0u8; usize::try_from(len).unwrap()];
            self.stream.read_exact(&mut payload).unwrap();
            if head[1] & 0x80 != 0 {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            match opcode {
                0x0 | 0x1 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).expect("text frames are UTF-8");
                    }
                }
                0x8 => panic!("chromium closed the DevTools connection"),
                0x9 => self.send_frame(0xA, &payload),
                _ => {}
            }
        }
    }
}
