//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`; no
//! browser download), for tests of the master's page. The WebDriver protocol is JSON over
//! HTTP; the few calls the tests need are here.

use serde_json::{json, Value};
use std::io::{BufRead, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a 1280×2600 window (the whole page).
    pub fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) is needed for the page tests");
        let mut b = Browser { driver, port, session: String::new() };
        super::eventually(20, "chromedriver listening", || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,2600"]
            }
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // chromedriver keeps the connection open: read the head, then Content-Length bytes.
        let mut reader = std::io::BufReader::new(conn);
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("webdriver {path}: {e}: {}", String::from_utf8_lossy(&body)));
        assert!(v["value"]["error"].is_null(), "webdriver {method} {path}: {}", v["value"]);
        v["value"].clone()
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn go(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({"url": url})));
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub fn eval(&self, script: &str) -> Value {
        self.call("POST", &self.at("/execute/sync"), Some(json!({"script": script, "args": []})))
    }

    /// The text of the element `css` selects (empty when there is none).
    pub fn text(&self, css: &str) -> String {
        let script = format!("const e = document.querySelector({}); return e ? e.textContent : '';", json!(css));
        self.eval(&script).as_str().unwrap_or_default().to_string()
    }

    fn element(&self, css: &str) -> String {
        let v = self.call("POST", &self.at("/element"), Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    /// Clicks what `css` selects, as a user would.
    pub fn click(&self, css: &str) {
        let e = self.element(css);
        self.call("POST", &self.at(&format!("/element/{e}/click")), Some(json!({})));
    }

    /// Replaces the text of the input `css` selects by typing `text`.
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call("POST", &self.at(&format!("/element/{e}/clear")), Some(json!({})));
        self.call("POST", &self.at(&format!("/element/{e}/value")), Some(json!({"text": text})));
    }

    /// Chooses `value` in the select `css` selects, by clicking its option.
    pub fn choose(&self, css: &str, value: &str) {
        self.click(css);
        self.click(&format!("{css} option[value='{value}']"));
        let script = format!("return document.querySelector({}).value;", json!(css));
        assert_eq!(self.eval(&script), json!(value), "{css}: the option was not chosen");
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self.call("GET", &self.at("/screenshot"), None);
        base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.call("DELETE", &self.at(""), None)));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
