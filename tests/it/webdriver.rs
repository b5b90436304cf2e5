//! A headless Chromium driven through chromedriver's W3C WebDriver HTTP API,
//! with the HTTP client the tests use anyway: the dozen commands the console
//! test needs do not call for a WebDriver crate and its dependencies.
//!
//! Every wait polls a condition until a generous deadline: a loaded machine
//! makes a test slower, never wrong.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::servers::announced_port;

/// The key W3C WebDriver names an element reference with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a wait waits before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Keys as WebDriver spells them.
pub mod keys {
    pub const ENTER: &str = "\u{E007}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const TAB: &str = "\u{E004}";
    pub const BACKSPACE: &str = "\u{E003}";
    pub const CONTROL: &str = "\u{E009}";
    /// Releases the modifier keys pressed so far.
    pub const RELEASE: &str = "\u{E000}";
}

/// An element found on the page.
#[derive(Clone, Debug)]
pub struct Element(String);

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    /// chromedriver's log, shown when something fails.
    pub log: PathBuf,
    _profile: tempfile::TempDir,
}

/// A program from an environment variable, else the first of `names` on the PATH.
fn program(variable: &str, names: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{} not found (set {variable}; scripts/test.sh installs Debian's chromium and chromium-driver)",
        names.join(" or ")
    );
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile and
    /// a window of `width` x `height`.
    pub async fn start(logs: &Path, width: u32, height: u32) -> Browser {
        let driver_path = program("CHROMEDRIVER", &["chromedriver"]);
        let chromium = program(
            "CHROME_BIN",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let log = logs.join("chromedriver.log");
        // On port 0, chromedriver says on stdout which port it took.
        let announced = logs.join("chromedriver.out");
        let mut driver = Command::new(&driver_path)
            .arg("--port=0")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&announced).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", driver_path.display()));
        let port = announced_port(
            &mut driver,
            &announced,
            "started successfully on port ",
            "chromedriver",
        );
        let profile = tempfile::tempdir().unwrap();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            client,
            log,
            _profile: profile,
        };
        browser.wait_ready().await;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--force-device-scale-factor=1",
            // Screenshots as wide as the window, without a scroll bar.
            "--hide-scrollbars",
            &format!("--user-data-dir={}", browser._profile.path().display()),
            &format!("--window-size={width},{height}"),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"script": 60_000, "pageLoad": 120_000, "implicit": 0},
        }}});
        let answer = browser.command("POST", "/session", capabilities).await;
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        browser
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let ready = self
                .client
                .get(format!("{}/status", self.base))
                .send()
                .await
                .ok();
            if let Some(response) = ready
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start; its log: {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends a WebDriver command; answers its `value`, or the error.
    async fn try_command(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.post(url).json(&body),
        };
        let response = request.send().await.unwrap();
        let ok = response.status().is_success();
        let answer: Value = response.json().await.unwrap();
        if ok {
            Ok(answer["value"].clone())
        } else {
            Err(answer["value"].clone())
        }
    }

    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.command("POST", &self.at("/url"), json!({"url": url}))
            .await;
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.command(
            "POST",
            &self.at("/window/rect"),
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// The first element matching a CSS selector, if there is one now.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let found = self
            .try_command(
                "POST",
                &self.at("/element"),
                json!({"using": "css selector", "value": css}),
            )
            .await
            .ok()?;
        found[ELEMENT].as_str().map(|id| Element(id.to_string()))
    }

    /// Waits for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait(&format!("an element {css}"), async || self.find(css).await)
            .await
    }

    /// Polls `probe` until it answers, within [`DEADLINE`].
    pub async fn wait<T>(&self, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(found) = probe().await {
                return found;
            }
            if Instant::now() > deadline {
                let page = self
                    .script("return document.body.innerText", json!([]))
                    .await;
                panic!(
                    "waited {} s for {what}; the page shows:\n{}",
                    DEADLINE.as_secs(),
                    page.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of the element matching `css` satisfies `check`; answers it.
    pub async fn wait_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        self.wait(&format!("the text of {css}"), async || {
            let text = self.text(css).await?;
            check(&text).then_some(text)
        })
        .await
    }

    /// The text of the first element matching `css` (as shown), if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            json!([css]),
        )
        .await
        .as_str()
        .map(String::from)
    }

    /// Runs `script` in the page (its `arguments` are `args`) and answers its result.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            &self.at("/execute/sync"),
            json!({"script": script, "args": args}),
        )
        .await
    }

    pub async fn click(&self, element: &Element) {
        self.command(
            "POST",
            &self.at(&format!("/element/{}/click", element.0)),
            json!({}),
        )
        .await;
    }

    /// Clicks the element matching `css`, once there is one.
    pub async fn click_on(&self, css: &str) {
        let element = self.wait_for(css).await;
        self.click(&element).await;
    }

    /// Types into an element (it gets the focus first).
    pub async fn type_into(&self, element: &Element, text: &str) {
        self.command(
            "POST",
            &self.at(&format!("/element/{}/value", element.0)),
            json!({"text": text}),
        )
        .await;
    }

    /// Presses keys wherever the focus is.
    pub async fn press(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for key in keys {
            actions.push(json!({"type": "keyDown", "value": key}));
            actions.push(json!({"type": "keyUp", "value": key}));
        }
        self.command(
            "POST",
            &self.at("/actions"),
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
    }

    /// A PNG of the whole page at the window's width (below the fold too),
    /// through Chromium's DevTools protocol.
    pub async fn page_screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let shot = self
            .command(
                "POST",
                &self.at("/goog/cdp/execute"),
                json!({"cmd": "Page.captureScreenshot",
                       "params": {"format": "png", "captureBeyondViewport": true}}),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }

    /// What the page wrote to its console (errors, policy violations), so far.
    pub async fn console_log(&self) -> Vec<Value> {
        let entries = self
            .command("POST", &self.at("/se/log"), json!({"type": "browser"}))
            .await;
        entries.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver close Chromium, which would
        // outlive a killed driver. Sent by hand: a drop cannot await.
        if !self.session.is_empty()
            && let Some(address) = self.base.strip_prefix("http://")
            && let Ok(mut stream) = std::net::TcpStream::connect(address)
        {
            use std::io::{Read, Write};
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
