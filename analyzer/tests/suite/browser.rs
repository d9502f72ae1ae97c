//! A small WebDriver client for headless Chromium (through `chromedriver`), enough to load a
//! report from file://, run scripts in it, read the browser console and take a screenshot.
//! HTTP/1.1 over a plain TCP socket: the protocol is a handful of JSON requests.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running chromedriver with one headless Chromium session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

fn find(names: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p.display().to_string());
            }
        }
    }
    None
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or returns why it cannot.
    pub fn start() -> Result<Browser, String> {
        let driver_bin = find(&["chromedriver"]).ok_or("chromedriver is not installed")?;
        let chrome = find(&["chromium", "chromium-browser", "google-chrome"])
            .ok_or("chromium is not installed")?;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            l.local_addr().map_err(|e| e.to_string())?.port()
        };
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("chromedriver: {e}"))?;
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(v) = b.request("GET", "/status", None)
                && v["value"]["ready"] == json!(true)
            {
                break;
            }
            if Instant::now() > deadline {
                return Err("chromedriver did not become ready in 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {
                "binary": chrome,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000",
                         "--force-device-scale-factor=1"]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let v = b.request("POST", "/session", Some(&caps))?;
        b.session = v["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session: {v}"))?
            .to_string();
        Ok(b)
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| e.to_string())?;
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).map_err(|e| e.to_string())?;
        let mut length = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).map_err(|e| e.to_string())?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut data = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).map_err(|e| e.to_string())?;
                let n = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).map_err(|e| e.to_string())?;
                data.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = length {
            data.resize(n, 0);
            r.read_exact(&mut data).map_err(|e| e.to_string())?;
        } else {
            r.read_to_end(&mut data).map_err(|e| e.to_string())?;
        }
        let v: Value = serde_json::from_slice(&data)
            .map_err(|e| format!("{method} {path}: {e}: {}", String::from_utf8_lossy(&data)))?;
        if !status.contains(" 200 ") {
            return Err(format!("{method} {path}: {}: {v}", status.trim()));
        }
        Ok(v)
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Loads a local file.
    pub fn open(&self, file: &Path) -> Result<(), String> {
        let url = format!("file://{}", file.canonicalize().unwrap().display());
        self.request(
            "POST",
            &self.session_path("/url"),
            Some(&json!({"url": url})),
        )
        .map(|_| ())
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub fn run(&self, script: &str, args: Value) -> Result<Value, String> {
        let v = self.request(
            "POST",
            &self.session_path("/execute/sync"),
            Some(&json!({"script": script, "args": args})),
        )?;
        Ok(v["value"].clone())
    }

    /// The browser console's messages since the last call.
    pub fn console(&self) -> Result<Vec<(String, String)>, String> {
        let v = self.request(
            "POST",
            &self.session_path("/se/log"),
            Some(&json!({"type": "browser"})),
        )?;
        Ok(v["value"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect())
    }

    /// The text of an open alert/confirm/prompt dialog, if one is open.
    pub fn alert(&self) -> Option<String> {
        self.request("GET", &self.session_path("/alert/text"), None)
            .ok()
            .map(|v| v["value"].to_string())
    }

    /// A PNG screenshot of the whole page.
    pub fn screenshot(&self) -> Result<Vec<u8>, String> {
        // Grow the window to the page so that the screenshot shows all of it.
        let height = self
            .run("return document.documentElement.scrollHeight;", json!([]))?
            .as_u64()
            .unwrap_or(1000)
            .min(16000);
        self.request(
            "POST",
            &self.session_path("/window/rect"),
            Some(&json!({"width": 1400, "height": height + 120})),
        )?;
        let v = self.request("GET", &self.session_path("/screenshot"), None)?;
        base64_decode(v["value"].as_str().ok_or("no screenshot")?)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.request("DELETE", &self.session_path(""), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return Err(format!("bad base64 byte {c}")),
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}
