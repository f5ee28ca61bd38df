//! A small W3C WebDriver client over `reqwest`, for the browser tests of the web UI.
//!
//! It drives Debian's `chromium` through `chromedriver` (package `chromium-driver`): no
//! browser download, no extra crates. Only what the tests need: navigate, find, click, run
//! script, screenshot, and Chrome DevTools commands through chromedriver's
//! `goog/cdp/execute` endpoint (used to hook `window.alert` before any page script runs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The WebDriver element reference key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where the browser binaries are expected (Debian packages `chromium`, `chromium-driver`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The chromedriver of the `chromium-driver` package.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The browser and driver binaries, or why they are missing.
pub fn find_browser() -> Result<(PathBuf, PathBuf), String> {
    let env_or = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default))
    };
    let chromium = env_or("SPANLINE_CHROMIUM", CHROMIUM);
    let driver = env_or("SPANLINE_CHROMEDRIVER", CHROMEDRIVER);
    for p in [&chromium, &driver] {
        if !p.exists() {
            return Err(format!(
                "{} not found (install with `apt-get install -y chromium chromium-driver`)",
                p.display()
            ));
        }
    }
    Ok((chromium, driver))
}

/// Where the UI tests put screenshots: `$SPANLINE_UI_ARTIFACTS`, else
/// `<workspace>/target/ui-artifacts`.
pub fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("SPANLINE_UI_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-artifacts"));
    std::fs::create_dir_all(&dir).expect("create the UI artifacts directory");
    dir.canonicalize().unwrap_or(dir)
}

/// A chromedriver process with one headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session of `chromium`
    /// (window 1400x1000).
    ///
    /// # Errors
    /// When chromedriver does not start or the session cannot be created.
    pub async fn start(chromium: &Path, chromedriver: &Path) -> Result<Browser, String> {
        let port = crate::free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", chromedriver.display()))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = browser
                .http
                .get(format!("{}/status", browser.base))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                break;
            }
            if Instant::now() > deadline {
                return Err("chromedriver did not answer /status within 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000",
                         "--no-first-run", "--no-default-browser-check"]
            }
        }}});
        let answer = browser.raw("POST", "/session", Some(caps)).await?;
        let session = answer["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {answer}"))?;
        browser.base = format!("{}/session/{session}", browser.base);
        Ok(browser)
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "{method} {path}: {status}: {} {}",
                v["value"]["error"], v["value"]["message"]
            ));
        }
        Ok(v["value"].clone())
    }

    /// Runs a WebDriver command on the session.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn cmd(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        self.raw(method, path, body).await
    }

    /// Runs a Chrome DevTools Protocol command.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Result<Value, String> {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
        .await
    }

    /// Navigates and waits for the load event.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.cmd("POST", "/url", Some(json!({ "url": url })))
            .await
            .map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    ///
    /// # Errors
    /// The driver's error (including a script exception).
    pub async fn exec(&self, script: &str, args: Vec<Value>) -> Result<Value, String> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Polls `script` until it returns something truthy (not `null`, `false`, `0`, `""`)
    /// and returns that, or fails after `timeout` with `what`.
    ///
    /// # Errors
    /// On timeout or a driver error.
    pub async fn wait_for(
        &self,
        what: &str,
        script: &str,
        timeout: Duration,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.exec(script, vec![]).await?;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {timeout:?} waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The element matching a CSS selector (its WebDriver reference).
    ///
    /// # Errors
    /// No such element, or a driver error.
    pub async fn find(&self, css: &str) -> Result<Value, String> {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(json!({ ELEMENT_KEY: v[ELEMENT_KEY].clone() }))
    }

    fn element_id(el: &Value) -> Result<String, String> {
        el[ELEMENT_KEY]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("not an element: {el}"))
    }

    /// Scrolls the element to the middle of the viewport (clear of the sticky header) and
    /// clicks it the way a user would.
    ///
    /// # Errors
    /// A driver error (not clickable, stale, ...).
    pub async fn click(&self, el: &Value) -> Result<(), String> {
        self.exec(
            "arguments[0].scrollIntoView({block: 'center'});",
            vec![el.clone()],
        )
        .await?;
        let id = Self::element_id(el)?;
        self.cmd("POST", &format!("/element/{id}/click"), None)
            .await
            .map(|_| ())
    }

    /// Finds by CSS and clicks.
    ///
    /// # Errors
    /// See [`Browser::find`] and [`Browser::click`].
    pub async fn click_css(&self, css: &str) -> Result<(), String> {
        let el = self.find(css).await?;
        self.click(&el).await
    }

    /// Types into an element.
    ///
    /// # Errors
    /// A driver error.
    pub async fn type_into(&self, css: &str, text: &str) -> Result<(), String> {
        let el = self.find(css).await?;
        let id = Self::element_id(&el)?;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .map(|_| ())
    }

    /// The rendered text of the element matching `css`.
    ///
    /// # Errors
    /// No such element, or a driver error.
    pub async fn text(&self, css: &str) -> Result<String, String> {
        let el = self.find(css).await?;
        let id = Self::element_id(&el)?;
        let v = self
            .cmd("GET", &format!("/element/{id}/text"), None)
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Saves a PNG screenshot of the viewport.
    ///
    /// # Errors
    /// A driver or file error.
    pub async fn screenshot(&self, path: &Path) -> Result<(), String> {
        let v = self.cmd("GET", "/screenshot", None).await?;
        let png = base64_decode(v.as_str().unwrap_or_default())?;
        std::fs::write(path, png).map_err(|e| format!("write {}: {e}", path.display()))
    }

    /// Saves a screenshot of the whole page (resizing the viewport to the page height for
    /// the shot).
    ///
    /// # Errors
    /// A driver or file error.
    pub async fn screenshot_full(&self, path: &Path) -> Result<(), String> {
        let height = self
            .exec(
                "return Math.min(4000, document.documentElement.scrollHeight);",
                vec![],
            )
            .await?
            .as_u64()
            .unwrap_or(1000);
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1400, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await?;
        let shot = self.screenshot(path).await;
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({}))
            .await?;
        shot
    }

    /// Ends the session and stops chromedriver.
    pub async fn quit(mut self) {
        let _ = self.raw("DELETE", "", None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(None) = self.driver.try_wait() {
            let _ = self.driver.kill();
            let _ = self.driver.wait();
        }
    }
}

/// Standard base64 (with padding, whitespace ignored).
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => return Err(format!("bad base64 byte {c}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_round_trip() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a$").is_err());
    }
}
