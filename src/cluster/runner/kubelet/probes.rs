//! Readiness and liveness probes (HTTP GET, TCP, exec), as kubelet runs them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::super::events::EventNote;
use super::PodWorker;
use super::process::signal_group;

impl PodWorker {
    pub(super) async fn run_probes(&mut self) {
        let now = Instant::now();
        for index in 0..self.containers.len() {
            if !self.containers[index].running() {
                continue;
            }
            let spec = self.containers[index].spec.clone();
            if let Some(probe) = &spec.readiness_probe
                && self.containers[index]
                    .readiness_next
                    .is_some_and(|t| t <= now)
            {
                let outcome = run_probe(probe, &spec, self.ip).await;
                let period = period(probe);
                let c = &mut self.containers[index];
                c.readiness_next = Some(Instant::now() + period);
                match outcome {
                    Ok(()) => {
                        c.readiness_failures = 0;
                        c.probe_successes += 1;
                        if c.probe_successes >= probe.success_threshold.unwrap_or(1) {
                            c.ready = true;
                        }
                    }
                    Err(message) => {
                        c.probe_successes = 0;
                        c.readiness_failures += 1;
                        let was_ready = c.ready;
                        if c.readiness_failures >= probe.failure_threshold.unwrap_or(3)
                            || !was_ready
                        {
                            c.ready = false;
                        }
                        if was_ready || c.readiness_failures == 1 {
                            self.event(EventNote::warning(
                                "Unhealthy",
                                &format!("Readiness probe failed: {message}"),
                            ))
                            .await;
                        }
                    }
                }
            }
            if let Some(probe) = &spec.liveness_probe
                && self.containers[index]
                    .liveness_next
                    .is_some_and(|t| t <= now)
            {
                let outcome = run_probe(probe, &spec, self.ip).await;
                let c = &mut self.containers[index];
                c.liveness_next = Some(Instant::now() + period(probe));
                match outcome {
                    Ok(()) => c.liveness_failures = 0,
                    Err(message) => {
                        c.liveness_failures += 1;
                        if c.liveness_failures >= probe.failure_threshold.unwrap_or(3) {
                            c.liveness_failures = 0;
                            if let Some(pid) = c.pid {
                                signal_group(pid, Signal::SIGKILL);
                            }
                            let name = spec.name.clone();
                            self.event(EventNote::warning(
                                "Unhealthy",
                                &format!("Liveness probe failed: {message}"),
                            ))
                            .await;
                            self.event(EventNote::normal(
                                "Killing",
                                &format!(
                                    "Container {name} failed liveness probe, will be restarted"
                                ),
                            ))
                            .await;
                        }
                    }
                }
            }
        }
    }
}

fn period(probe: &Probe) -> Duration {
    Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64)
}

/// Runs one probe attempt; `Err` carries the message kubelet would show.
async fn run_probe(probe: &Probe, container: &Container, pod_ip: Ipv4Addr) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let port_of = |port: &IntOrString| -> Result<u16, String> {
        match port {
            IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| {
                    format!(
                        "port `{name}` is not a named port of container `{}`",
                        container.name
                    )
                }),
        }
    };
    if let Some(http) = &probe.http_get {
        let host: IpAddr = http
            .host
            .as_deref()
            .and_then(|h| h.parse().ok())
            .unwrap_or(IpAddr::V4(pod_ip));
        let addr = SocketAddr::new(host, port_of(&http.port)?);
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        return match tokio::time::timeout(timeout, http_get_status(addr, &path, &headers)).await {
            Err(_) => Err(format!(
                "Get \"http://{addr}{path}\": context deadline exceeded"
            )),
            Ok(Err(e)) => Err(format!("Get \"http://{addr}{path}\": {e}")),
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
            Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host: IpAddr = tcp
            .host
            .as_deref()
            .and_then(|h| h.parse().ok())
            .unwrap_or(IpAddr::V4(pod_ip));
        let addr = SocketAddr::new(host, port_of(&tcp.port)?);
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
            Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        let Some((program, args)) = command.split_first() else {
            return Err("exec probe has no command".into());
        };
        let run = tokio::process::Command::new(program)
            .args(args)
            .env("POD_IP", pod_ip.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        return match tokio::time::timeout(timeout, run).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("command {command:?} exited with {status}")),
            Ok(Err(e)) => Err(format!("command {command:?} could not run: {e}")),
            Err(_) => Err(format!("command {command:?} timed out")),
        };
    }
    Ok(())
}

// Hand-written: a probe only needs the status line of one HTTP/1.1 GET.
async fn http_get_status(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::HTTPGetAction;

    #[tokio::test]
    async fn http_probes_pass_on_2xx_and_fail_with_the_status_code() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let code = if req.starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let probe = |path: &str| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::Int(i32::from(port)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Container::default();
        assert_eq!(
            run_probe(&probe("/ok"), &c, Ipv4Addr::LOCALHOST).await,
            Ok(())
        );
        let err = run_probe(&probe("/bad"), &c, Ipv4Addr::LOCALHOST)
            .await
            .unwrap_err();
        assert_eq!(err, "HTTP probe failed with statuscode: 503");
    }
}
