//! A Kubernetes cluster's logs as shippers send them to Loki, for the log
//! storage benchmark: ingress controllers writing JSON access logs, Go
//! services writing logfmt, and Spring Boot services writing Java's default
//! pattern with an occasional multi-line stack trace (one entry, as a
//! multiline stage ships it). What makes real logs compress is modelled:
//! a fixed set of message templates per service, clients, routes and user
//! agents drawn from skewed (Zipf) pools, latencies and sizes log-normal,
//! Kafka offsets that only grow, stack traces that repeat their frames; what
//! does not compress is kept too: request and trace ids are random.

use std::fmt::Write as _;

use strata_model::logs::LogEntry;
use strata_model::{Label, Labels};

use super::Rng;

/// The three kinds of service a stream belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// ingress-nginx with a JSON `log-format-upstream`.
    JsonAccess,
    /// A Go service logging with go-kit/slog in logfmt.
    Logfmt,
    /// A Spring Boot service: Logback's default console pattern.
    Java,
}

impl LogFormat {
    pub const ALL: [LogFormat; 3] = [LogFormat::JsonAccess, LogFormat::Logfmt, LogFormat::Java];

    pub fn name(self) -> &'static str {
        match self {
            LogFormat::JsonAccess => "JSON access logs",
            LogFormat::Logfmt => "logfmt application logs",
            LogFormat::Java => "Java (Spring Boot, stack traces)",
        }
    }

    /// Mean entries per second of one stream.
    fn rate(self) -> f64 {
        match self {
            LogFormat::JsonAccess => 2.0,
            LogFormat::Logfmt => 1.0,
            LogFormat::Java => 0.5,
        }
    }
}

/// Draws indexes 0..n with probability falling as 1/(i+1)^s.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|i| {
                total += 1.0 / ((i + 1) as f64).powf(s);
                total
            })
            .collect();
        Self { cumulative }
    }

    fn draw(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.unit() * total;
        self.cumulative
            .partition_point(|&c| c < x)
            .min(self.cumulative.len() - 1)
    }
}

fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.next() % n.max(1)
}

/// A log-normal draw with this median and spread (sigma of the log).
fn log_normal(rng: &mut Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * rng.normal()).exp()
}

fn hex(rng: &mut Rng, out: &mut String, digits: usize) {
    for _ in 0..digits.div_ceil(16) {
        let _ = write!(out, "{:016x}", rng.next());
    }
    out.truncate(out.len() - (digits.div_ceil(16) * 16 - digits));
}

/// `(year, month, day, hour, minute, second, nanosecond)` of a Unix time in ns.
pub fn civil(ns: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, sod / 3600, sod / 60 % 60, sod % 60, nanos)
}

const ROUTES: [(&str, bool, f64, f64); 16] = [
    // (path, takes an id, median ms, median bytes)
    ("/api/v1/products", false, 18.0, 8_400.0),
    ("/api/v1/products/", true, 9.0, 1_900.0),
    ("/api/v1/cart", false, 12.0, 1_100.0),
    ("/healthz", false, 0.4, 2.0),
    ("/api/v1/orders/", true, 24.0, 2_300.0),
    ("/static/js/app.3f9c2a1e.js", false, 1.1, 412_330.0),
    ("/api/v1/search", false, 85.0, 15_200.0),
    ("/api/v1/users/", true, 11.0, 900.0),
    ("/static/css/main.8d1b77c0.css", false, 0.9, 48_120.0),
    ("/api/v1/orders", false, 140.0, 640.0),
    ("/metrics", false, 3.0, 21_000.0),
    ("/api/v1/recommendations/", true, 60.0, 5_400.0),
    ("/api/v1/payments", false, 310.0, 420.0),
    ("/favicon.ico", false, 0.5, 15_086.0),
    ("/api/v1/inventory/", true, 14.0, 700.0),
    ("/login", false, 45.0, 6_100.0),
];

const USER_AGENTS: [&str; 10] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "shop-android/4.12.0 (Linux; Android 14; Pixel 8) okhttp/4.12.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "kube-probe/1.31",
    "Prometheus/2.53.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.39 Mobile Safari/537.36",
    "curl/8.5.0",
    "Go-http-client/1.1",
];

const STATUSES: [(u16, f64); 10] = [
    (200, 0.86),
    (304, 0.04),
    (201, 0.025),
    (404, 0.03),
    (302, 0.015),
    (401, 0.01),
    (400, 0.008),
    (499, 0.004),
    (500, 0.005),
    (503, 0.003),
];

fn status(rng: &mut Rng) -> u16 {
    let mut x = rng.unit();
    for (s, p) in STATUSES {
        if x < p {
            return s;
        }
        x -= p;
    }
    200
}

struct Access {
    clients: Vec<String>,
    client_pick: Zipf,
    route_pick: Zipf,
    agent_pick: Zipf,
    upstreams: Vec<String>,
}

fn access_line(a: &Access, rng: &mut Rng, ns: i64, out: &mut String) {
    let (y, mo, d, h, mi, s, n) = civil(ns);
    let (path, with_id, median_ms, median_bytes) = ROUTES[a.route_pick.draw(rng)];
    let status = status(rng);
    let seconds = log_normal(rng, median_ms / 1000.0, 0.8);
    let bytes = if status == 304 {
        0.0
    } else {
        log_normal(rng, median_bytes, 0.3).round()
    };
    let method = match (path, below(rng, 20)) {
        ("/api/v1/orders" | "/api/v1/payments" | "/api/v1/cart", 0..=12) => "POST",
        (_, 0) => "PUT",
        _ => "GET",
    };
    let _ = write!(
        out,
        r#"{{"time":"{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}+00:00","remote_addr":"{}","request_id":""#,
        n / 1_000_000,
        a.clients[a.client_pick.draw(rng)]
    );
    hex(rng, out, 32);
    let _ = write!(
        out,
        r#"","method":"{method}","host":"shop.example.com","path":"{path}"#
    );
    if with_id {
        let _ = write!(out, "{}", 1 + below(rng, 250_000));
    }
    let upstream = &a.upstreams[below(rng, a.upstreams.len() as u64) as usize];
    let referer = if rng.unit() < 0.6 {
        "-"
    } else {
        [
            "https://shop.example.com/",
            "https://shop.example.com/cart",
            "https://www.google.com/",
        ][below(rng, 3) as usize]
    };
    let _ = write!(
        out,
        r#"","protocol":"HTTP/2.0","status":{status},"bytes_sent":{bytes},"request_time":{seconds:.3},"upstream_addr":"{upstream}","upstream_response_time":"{:.3}","upstream_status":"{status}","http_referer":"{referer}","http_user_agent":"{}"}}"#,
        (seconds - 0.001).max(0.0),
        USER_AGENTS[a.agent_pick.draw(rng)]
    );
}

/// A Go service's messages: level, caller, message and its keys.
const GO_TEMPLATES: [(&str, &str, &str); 12] = [
    ("info", "http/server.go:212", "request served"),
    ("debug", "cache/redis.go:88", "cache lookup"),
    ("info", "orders/service.go:141", "order created"),
    ("info", "kafka/consumer.go:301", "message consumed"),
    ("debug", "db/pool.go:57", "connection acquired"),
    ("info", "http/server.go:212", "request served"),
    ("warn", "db/query.go:119", "slow query"),
    ("info", "payments/client.go:77", "payment authorized"),
    ("debug", "kafka/consumer.go:265", "committed offsets"),
    ("error", "payments/client.go:93", "payment failed"),
    ("info", "inventory/reserve.go:45", "stock reserved"),
    ("warn", "http/retry.go:61", "retrying request"),
];

struct GoService {
    pick: Zipf,
    offsets: [u64; 6],
}

fn logfmt_line(g: &mut GoService, rng: &mut Rng, ns: i64, out: &mut String) {
    let (y, mo, d, h, mi, s, n) = civil(ns);
    let (level, caller, msg) = GO_TEMPLATES[g.pick.draw(rng)];
    let _ = write!(
        out,
        "ts={y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}Z level={level} caller={caller} msg=\"{msg}\"",
        n / 1000
    );
    match msg {
        "request served" => {
            let (path, with_id, median_ms, _) = ROUTES[below(rng, 5) as usize];
            let _ = write!(out, " method=GET path={path}");
            if with_id {
                let _ = write!(out, "{}", 1 + below(rng, 250_000));
            }
            let _ = write!(
                out,
                " status={} duration={:.1}ms trace_id=",
                status(rng),
                log_normal(rng, median_ms, 0.7)
            );
            hex(rng, out, 32);
        }
        "cache lookup" => {
            let hit = rng.unit() < 0.9;
            let _ = write!(
                out,
                " key=product:{} hit={hit} took={}µs",
                1 + below(rng, 40_000),
                log_normal(rng, 180.0, 0.5).round()
            );
        }
        "order created" | "payment authorized" | "payment failed" => {
            let cents = log_normal(rng, 6_000.0, 0.9).round() as u64;
            let _ = write!(
                out,
                " order_id={} customer_id={} amount={}.{:02} currency=EUR",
                9_000_000 + below(rng, 500_000),
                1 + below(rng, 120_000),
                cents / 100,
                cents % 100
            );
            if msg == "payment failed" {
                let err =
                    ["card_declined", "insufficient_funds", "expired_card"][below(rng, 3) as usize];
                let _ = write!(
                    out,
                    " provider=stripe err={err} attempt={}",
                    1 + below(rng, 3)
                );
            }
            out.push_str(" trace_id=");
            hex(rng, out, 32);
        }
        "message consumed" | "committed offsets" => {
            let p = below(rng, 6) as usize;
            g.offsets[p] += 1 + below(rng, 40);
            let _ = write!(
                out,
                " topic=orders partition={p} offset={} lag={}",
                g.offsets[p],
                below(rng, 30)
            );
        }
        "connection acquired" => {
            let _ = write!(
                out,
                " pool=orders-db active={} idle={} wait={:.2}ms",
                1 + below(rng, 20),
                below(rng, 10),
                log_normal(rng, 0.05, 1.2)
            );
        }
        "slow query" => {
            let _ = write!(
                out,
                " query=\"SELECT id, status, total FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 50\" duration={}ms rows={}",
                log_normal(rng, 800.0, 0.4).round(),
                below(rng, 50)
            );
        }
        "stock reserved" => {
            let _ = write!(
                out,
                " sku=SKU-{:06} warehouse=fra-{} quantity={}",
                below(rng, 60_000),
                1 + below(rng, 3),
                1 + below(rng, 4)
            );
        }
        _ => {
            let _ = write!(
                out,
                " url=http://inventory.shop.svc.cluster.local:8080/api/v1/reserve attempt={} err=\"context deadline exceeded\"",
                1 + below(rng, 3)
            );
        }
    }
}

/// A Spring service's messages: level, logger and message.
const JAVA_TEMPLATES: [(&str, &str, &str); 8] = [
    (
        "INFO",
        "c.e.shop.orders.OrderController",
        "Fetching order {id} for customer {cid}",
    ),
    (
        "INFO",
        "c.e.shop.orders.OrderService",
        "Order {id} placed by customer {cid} ({n} items)",
    ),
    (
        "DEBUG",
        "o.h.engine.transaction.internal.TransactionImpl",
        "begin",
    ),
    (
        "INFO",
        "c.e.shop.payments.PaymentGateway",
        "Authorized payment for order {id}",
    ),
    (
        "WARN",
        "o.s.w.s.m.s.DefaultHandlerExceptionResolver",
        "Resolved [org.springframework.web.HttpRequestMethodNotSupportedException: Request method 'GET' is not supported]",
    ),
    (
        "INFO",
        "c.e.shop.orders.OrderEventPublisher",
        "Published OrderPlaced event for order {id} to topic orders",
    ),
    (
        "DEBUG",
        "o.s.jdbc.core.JdbcTemplate",
        "Executing prepared SQL query",
    ),
    (
        "INFO",
        "c.zaxxer.hikari.pool.HikariPool",
        "HikariPool-1 - Pool stats (total=10, active={n}, idle={m}, waiting=0)",
    ),
];

const EXCEPTIONS: [(&str, &str); 3] = [
    (
        "org.springframework.dao.DataIntegrityViolationException: could not execute statement; SQL [n/a]; constraint [orders_customer_fk]",
        "org.postgresql.util.PSQLException: ERROR: insert or update on table \"orders\" violates foreign key constraint \"orders_customer_fk\"",
    ),
    (
        "java.lang.IllegalStateException: Payment provider returned status 502",
        "java.net.SocketTimeoutException: Read timed out",
    ),
    (
        "java.lang.NullPointerException: Cannot invoke \"com.example.shop.orders.Customer.getAddress()\" because \"customer\" is null",
        "",
    ),
];

const APP_FRAMES: [&str; 6] = [
    "com.example.shop.orders.OrderService.placeOrder(OrderService.java:142)",
    "com.example.shop.orders.OrderService$$SpringCGLIB$$0.placeOrder(<generated>)",
    "com.example.shop.orders.OrderController.create(OrderController.java:57)",
    "com.example.shop.payments.PaymentGateway.authorize(PaymentGateway.java:88)",
    "com.example.shop.orders.CustomerResolver.resolve(CustomerResolver.java:31)",
    "com.example.shop.orders.OrderRepository.save(OrderRepository.java:64)",
];

const FRAMEWORK_FRAMES: [&str; 20] = [
    "org.springframework.aop.framework.CglibAopProxy$DynamicAdvisedInterceptor.intercept(CglibAopProxy.java:727)",
    "org.springframework.transaction.interceptor.TransactionInterceptor.invoke(TransactionInterceptor.java:119)",
    "org.springframework.aop.framework.ReflectiveMethodInvocation.proceed(ReflectiveMethodInvocation.java:184)",
    "org.springframework.transaction.interceptor.TransactionAspectSupport.invokeWithinTransaction(TransactionAspectSupport.java:390)",
    "java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)",
    "java.base/java.lang.reflect.Method.invoke(Method.java:580)",
    "org.springframework.web.method.support.InvocableHandlerMethod.doInvoke(InvocableHandlerMethod.java:255)",
    "org.springframework.web.method.support.InvocableHandlerMethod.invokeForRequest(InvocableHandlerMethod.java:188)",
    "org.springframework.web.servlet.mvc.method.annotation.ServletInvocableHandlerMethod.invokeAndHandle(ServletInvocableHandlerMethod.java:118)",
    "org.springframework.web.servlet.mvc.method.annotation.RequestMappingHandlerAdapter.invokeHandlerMethod(RequestMappingHandlerAdapter.java:986)",
    "org.springframework.web.servlet.DispatcherServlet.doDispatch(DispatcherServlet.java:1089)",
    "org.springframework.web.servlet.DispatcherServlet.doService(DispatcherServlet.java:979)",
    "org.springframework.web.servlet.FrameworkServlet.processRequest(FrameworkServlet.java:1014)",
    "jakarta.servlet.http.HttpServlet.service(HttpServlet.java:590)",
    "org.apache.catalina.core.ApplicationFilterChain.internalDoFilter(ApplicationFilterChain.java:195)",
    "org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:140)",
    "org.springframework.web.filter.OncePerRequestFilter.doFilter(OncePerRequestFilter.java:116)",
    "org.apache.catalina.core.StandardWrapperValve.invoke(StandardWrapperValve.java:167)",
    "org.apache.coyote.http11.Http11Processor.service(Http11Processor.java:340)",
    "org.apache.tomcat.util.threads.TaskThread$WrappingRunnable.run(TaskThread.java:63)",
];

fn java_line(pick: &Zipf, rng: &mut Rng, ns: i64, out: &mut String) {
    let (y, mo, d, h, mi, s, n) = civil(ns);
    let error = rng.unit() < 0.01;
    let (level, logger, msg) = if error {
        (
            "ERROR",
            "o.a.c.c.C.[.[.[/].[dispatcherServlet]",
            "Servlet.service() for servlet [dispatcherServlet] in context with path [] threw exception",
        )
    } else {
        JAVA_TEMPLATES[pick.draw(rng)]
    };
    let thread = 1 + below(rng, 10);
    let _ = write!(
        out,
        "{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z {level:>5} 1 --- [shop-orders] [nio-8080-exec-{thread}] {logger:<40} : ",
        n / 1_000_000
    );
    let mut rest = msg;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let _ = match &rest[open + 1..open + close] {
            "id" => write!(out, "{}", 9_000_000 + below(rng, 500_000)),
            "cid" => write!(out, "{}", 1 + below(rng, 120_000)),
            "n" => write!(out, "{}", 1 + below(rng, 8)),
            _ => write!(out, "{}", below(rng, 10)),
        };
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    if error {
        let (exception, cause) = EXCEPTIONS[below(rng, EXCEPTIONS.len() as u64) as usize];
        let _ = write!(out, "\n{exception}");
        let app = 2 + below(rng, 3) as usize;
        for f in APP_FRAMES.iter().take(app) {
            let _ = write!(out, "\n\tat {f}");
        }
        for f in FRAMEWORK_FRAMES {
            let _ = write!(out, "\n\tat {f}");
        }
        if !cause.is_empty() {
            let _ = write!(out, "\nCaused by: {cause}");
            for f in APP_FRAMES.iter().skip(app).take(2) {
                let _ = write!(out, "\n\tat {f}");
            }
            let _ = write!(
                out,
                "\n\t... {} common frames omitted",
                FRAMEWORK_FRAMES.len()
            );
        }
    }
}

/// `per_format` streams of each format in `formats`, each with entries over
/// `seconds` from `start_ns`, arriving as a Poisson process at the format's
/// rate. Each stream's entries are in time order; Java entries carry a
/// trace id and span id as structured metadata, as the OpenTelemetry
/// Collector ships them.
pub fn generate_logs(
    formats: &[LogFormat],
    per_format: usize,
    start_ns: i64,
    seconds: i64,
    seed: u64,
) -> Vec<(Labels, Vec<LogEntry>)> {
    let mut rng = Rng(seed | 1);
    let clients: Vec<String> = (0..400)
        .map(|_| {
            format!(
                "10.{}.{}.{}",
                42 + below(&mut rng, 4),
                below(&mut rng, 256),
                1 + below(&mut rng, 254)
            )
        })
        .collect();
    let mut out = Vec::new();
    for &format in formats {
        for i in 0..per_format {
            let (app, container) = match format {
                LogFormat::JsonAccess => ("ingress-nginx", "controller"),
                LogFormat::Logfmt => (["orders", "inventory", "checkout"][i % 3], "app"),
                LogFormat::Java => (["shop-orders", "shop-payments"][i % 2], "app"),
            };
            let pod = format!(
                "{app}-{:x}-{}",
                0x5f7c9d8b4 + i as u64 / 4,
                ["x7k2p", "q9z4m", "b3n8w", "t6v1c"][i % 4]
            );
            let labels = Labels::new(vec![
                Label::new(
                    "namespace",
                    if format == LogFormat::JsonAccess {
                        "ingress-nginx"
                    } else {
                        "shop"
                    },
                ),
                Label::new("app", app),
                Label::new("pod", &pod),
                Label::new("container", container),
                Label::new(
                    "job",
                    format!(
                        "{}/{app}",
                        if format == LogFormat::JsonAccess {
                            "ingress-nginx"
                        } else {
                            "shop"
                        }
                    ),
                ),
                Label::new("stream", "stdout"),
            ]);
            let access = Access {
                clients: clients.clone(),
                client_pick: Zipf::new(clients.len(), 1.1),
                route_pick: Zipf::new(ROUTES.len(), 0.9),
                agent_pick: Zipf::new(USER_AGENTS.len(), 1.2),
                upstreams: (0..6)
                    .map(|k| format!("10.42.{}.{}:8080", i % 4, 10 + k))
                    .collect(),
            };
            let mut go = GoService {
                pick: Zipf::new(GO_TEMPLATES.len(), 0.8),
                offsets: [0; 6].map(|_| 4_000_000 + below(&mut rng, 1_000_000)),
            };
            let java_pick = Zipf::new(JAVA_TEMPLATES.len(), 0.8);
            let mut entries = Vec::new();
            let mut t = start_ns;
            let end = start_ns + seconds * 1_000_000_000;
            loop {
                let gap = -rng.unit().max(1e-12).ln() / format.rate();
                t += (gap * 1e9) as i64;
                if t >= end {
                    break;
                }
                let mut line = String::with_capacity(400);
                let mut metadata = Labels::default();
                match format {
                    LogFormat::JsonAccess => access_line(&access, &mut rng, t, &mut line),
                    LogFormat::Logfmt => logfmt_line(&mut go, &mut rng, t, &mut line),
                    LogFormat::Java => {
                        java_line(&java_pick, &mut rng, t, &mut line);
                        let (mut trace, mut span) = (String::new(), String::new());
                        hex(&mut rng, &mut trace, 32);
                        hex(&mut rng, &mut span, 16);
                        metadata = Labels::new(vec![
                            Label::new("span_id", &span),
                            Label::new("trace_id", &trace),
                        ]);
                    }
                }
                entries.push(LogEntry {
                    ts: t,
                    line,
                    metadata,
                });
            }
            out.push((labels, entries));
        }
    }
    out
}
