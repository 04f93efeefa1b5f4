//! A misbehaving HTTP/1.1 proxy for fault tests: it sits on 127.0.0.1
//! between a client and an S3 server and, request by request, passes the
//! request on, answers an error itself, resets the connection, stalls, or
//! lies about conditional writes.
//!
//! Plain threads and std only, so both the library's unit tests (through
//! `#[path]`) and the e2e binary can use it. It understands just enough
//! HTTP for the AWS SDK against moto: requests with `Content-Length`
//! bodies (and `Expect: 100-continue`), responses with `Content-Length`
//! or chunked bodies. Each forwarded request gets its own upstream
//! connection; the client side is kept alive.
//!
//! Faults are taken from a queue, first come first served, each optionally
//! only for one HTTP method; when the queue has none for a request, the
//! standing fault (default `Pass`) applies, which is how an outage is made:
//! a standing `Status(403, "AccessDenied")` refuses every request from then
//! on (a permanent error), a standing `Reset` drops every connection, and a
//! standing `Stall` holds every request unanswered until the standing fault
//! changes (a store that accepts connections and never answers).

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward as is.
    Pass,
    /// Answer with this status and S3 error code, without forwarding.
    Status(u16, &'static str),
    /// Close the connection at once, without forwarding (nothing applied).
    Reset,
    /// Forward, let the server apply it, then close without answering:
    /// the ambiguous failure.
    ResetAfterForward,
    /// Wait this long, then forward.
    Delay(Duration),
    /// Forward, but turn a 412 answer into 200: a store that ignores
    /// `If-None-Match` / `If-Match`, as seen by the client.
    IgnoreConditions,
    /// Hold the request, unanswered and not forwarded, while the standing
    /// fault is `Stall`; then handle it as if it had just arrived.
    #[allow(dead_code)] // the library's unit tests do not stall
    Stall,
}

#[derive(Default)]
struct Plan {
    queue: VecDeque<(Option<&'static str>, Fault)>,
    standing: Option<Fault>,
}

pub struct Proxy {
    addr: SocketAddr,
    plan: Arc<Mutex<Plan>>,
    requests: Arc<AtomicUsize>,
    faults_applied: Arc<AtomicUsize>,
    kinds: Arc<Mutex<BTreeMap<String, usize>>>,
    /// "METHOD target" of each request since the last reset.
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`http://127.0.0.1:PORT` or `127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream is IP:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            plan: Arc::default(),
            requests: Arc::default(),
            faults_applied: Arc::default(),
            kinds: Arc::default(),
            lines: Arc::default(),
            stop: Arc::default(),
        };
        let (plan, requests, applied, kinds, lines, stop) = (
            proxy.plan.clone(),
            proxy.requests.clone(),
            proxy.faults_applied.clone(),
            proxy.kinds.clone(),
            proxy.lines.clone(),
            proxy.stop.clone(),
        );
        thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let shared = Shared {
                        plan: plan.clone(),
                        requests: requests.clone(),
                        applied: applied.clone(),
                        kinds: kinds.clone(),
                        lines: lines.clone(),
                        stop: stop.clone(),
                    };
                    let _ = thread::Builder::new()
                        .name("fault-proxy-conn".into())
                        .spawn(move || {
                            let _ = serve(conn, upstream, &shared);
                        });
                }
            })
            .expect("spawn proxy");
        proxy
    }

    /// `http://127.0.0.1:PORT`, to use as the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next request (of `method`, if given) gets `fault`.
    pub fn push(&self, method: Option<&'static str>, fault: Fault) {
        self.plan.lock().unwrap().queue.push_back((method, fault));
    }

    /// What every request gets when the queue has nothing for it.
    pub fn set_standing(&self, fault: Fault) {
        self.plan.lock().unwrap().standing = Some(fault);
    }

    /// Requests seen so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// Waits until no request reached the proxy for half a second (a
    /// mount's background work is done).
    #[allow(dead_code)]
    pub fn wait_until_quiet(&self) {
        let start = std::time::Instant::now();
        let mut seen = self.requests();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let now = self.requests();
            if now == seen {
                return;
            }
            assert!(start.elapsed().as_secs() < 30, "the mount never went quiet");
            seen = now;
        }
    }

    /// Requests seen so far by kind: the method, with ` list` for a
    /// listing, ` delete` for a batch delete (GET and POST with a query).
    #[allow(dead_code)] // request counts are an e2e concern only
    pub fn request_kinds(&self) -> BTreeMap<String, usize> {
        self.kinds.lock().unwrap().clone()
    }

    /// Starts the counts of [`Proxy::request_kinds`] (and the lines of
    /// [`Proxy::request_lines`]) afresh.
    #[allow(dead_code)]
    pub fn reset_request_kinds(&self) {
        self.kinds.lock().unwrap().clear();
        self.lines.lock().unwrap().clear();
    }

    /// "METHOD target" of every request since the last reset, to tell
    /// one object kind's requests from another's.
    #[allow(dead_code)]
    pub fn request_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Requests that got a fault other than `Pass`.
    pub fn faults_applied(&self) -> usize {
        self.faults_applied.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

struct Request {
    method: String,
    head: Vec<u8>,
    body: Vec<u8>,
    conditional: bool,
}

fn next_fault(plan: &Mutex<Plan>, method: &str) -> Fault {
    let mut plan = plan.lock().unwrap();
    let at = plan
        .queue
        .iter()
        .position(|(m, _)| m.is_none_or(|m| m.eq_ignore_ascii_case(method)));
    match at {
        Some(i) => plan.queue.remove(i).unwrap().1,
        None => plan.standing.clone().unwrap_or(Fault::Pass),
    }
}

/// What every connection thread shares with the [`Proxy`].
struct Shared {
    plan: Arc<Mutex<Plan>>,
    requests: Arc<AtomicUsize>,
    applied: Arc<AtomicUsize>,
    kinds: Arc<Mutex<BTreeMap<String, usize>>>,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

/// Waits while the standing fault is `Stall` (or the proxy is dropped).
fn stall(shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed)
        && shared.plan.lock().unwrap().standing == Some(Fault::Stall)
    {
        thread::sleep(Duration::from_millis(20));
    }
}

fn serve(client: TcpStream, upstream: SocketAddr, shared: &Shared) -> io::Result<()> {
    let Shared {
        plan,
        requests,
        applied,
        kinds,
        lines,
        ..
    } = shared;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    while let Some(req) = read_request(&mut reader, &mut client)? {
        requests.fetch_add(1, Ordering::Relaxed);
        *kinds.lock().unwrap().entry(kind(&req)).or_default() += 1;
        let line = req.head.split(|&b| b == b'\r').next().unwrap_or(b"");
        let target = String::from_utf8_lossy(line)
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_owned();
        lines
            .lock()
            .unwrap()
            .push(format!("{} {target}", req.method));
        let mut fault = next_fault(plan, &req.method);
        if fault != Fault::Pass {
            applied.fetch_add(1, Ordering::Relaxed);
        }
        if fault == Fault::Stall {
            stall(shared);
            if shared.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            fault = next_fault(plan, &req.method);
        }
        match fault {
            Fault::Pass | Fault::IgnoreConditions | Fault::Delay(_) | Fault::ResetAfterForward => {
                if let Fault::Delay(d) = fault {
                    thread::sleep(d);
                }
                let (status, response) = forward(&req, upstream)?;
                if fault == Fault::ResetAfterForward {
                    let _ = client.shutdown(Shutdown::Both);
                    return Ok(());
                }
                if fault == Fault::IgnoreConditions && status == 412 && req.conditional {
                    let etag = format!("\"fake{}\"", requests.load(Ordering::Relaxed));
                    write_simple(&mut client, 200, "OK", &[("ETag", &etag)], b"")?;
                } else {
                    client.write_all(&response)?;
                }
            }
            Fault::Status(status, code) => {
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>"
                );
                let headers = [("Content-Type", "application/xml")];
                let body = if req.method == "HEAD" {
                    ""
                } else {
                    body.as_str()
                };
                write_simple(&mut client, status, code, &headers, body.as_bytes())?;
            }
            // (Stall: a second queued one met after a stall; drop it.)
            Fault::Reset | Fault::Stall => {
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
    }
    Ok(())
}

fn kind(req: &Request) -> String {
    let line = req.head.split(|&b| b == b'\r').next().unwrap_or(b"");
    let target = String::from_utf8_lossy(line);
    let query = target
        .split(' ')
        .nth(1)
        .and_then(|t| t.split_once('?'))
        .map_or("", |(_, q)| q);
    let what = if query.contains("list-type") {
        " list"
    } else if query.split('&').any(|p| p == "delete" || p == "delete=") {
        " delete"
    } else {
        ""
    };
    format!("{}{what}", req.method)
}

fn write_simple(
    w: &mut impl Write,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    w.write_all(out.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Header lines up to the blank line; `None` at a clean end of stream.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return if lines.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            if lines.is_empty() {
                continue;
            }
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines[1..].iter().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn read_request(r: &mut impl BufRead, client: &mut TcpStream) -> io::Result<Option<Request>> {
    let Some(lines) = read_head(r)? else {
        return Ok(None);
    };
    let method = lines[0].split(' ').next().unwrap_or("").to_owned();
    if header(&lines, "transfer-encoding").is_some() {
        return Err(io::Error::other(
            "the test proxy reads Content-Length bodies only",
        ));
    }
    if header(&lines, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let len: usize =
        header(&lines, "content-length").map_or(Ok(0), |v| v.parse().map_err(io::Error::other))?;
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let conditional =
        header(&lines, "if-none-match").is_some() || header(&lines, "if-match").is_some();
    let mut head = String::new();
    for l in &lines {
        if l.split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("expect"))
        {
            continue;
        }
        head.push_str(l);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    Ok(Some(Request {
        method,
        head: head.into_bytes(),
        body,
        conditional,
    }))
}

/// Sends `req` upstream and returns the status and the raw response.
fn forward(req: &Request, upstream: SocketAddr) -> io::Result<(u16, Vec<u8>)> {
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&req.head)?;
    up.write_all(&req.body)?;
    let mut r = BufReader::new(up);
    loop {
        let lines = read_head(&mut r)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let status: u16 = lines[0]
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other("bad status line"))?;
        if (100..200).contains(&status) {
            continue;
        }
        let mut raw = Vec::new();
        for l in &lines {
            raw.extend_from_slice(l.as_bytes());
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        let no_body = req.method == "HEAD" || status == 204 || status == 304;
        if no_body {
        } else if header(&lines, "transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            copy_chunked(&mut r, &mut raw)?;
        } else if let Some(len) = header(&lines, "content-length") {
            let len: usize = len.parse().map_err(io::Error::other)?;
            let at = raw.len();
            raw.resize(at + len, 0);
            r.read_exact(&mut raw[at..])?;
        } else {
            r.read_to_end(&mut raw)?;
        }
        return Ok((status, raw));
    }
}

fn copy_chunked(r: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let mut size_line = String::new();
        r.read_line(&mut size_line)?;
        out.extend_from_slice(size_line.as_bytes());
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(io::Error::other)?;
        let at = out.len();
        out.resize(at + size + 2, 0);
        r.read_exact(&mut out[at..])?;
        if size == 0 {
            return Ok(());
        }
    }
}
