package fletch.minidfs;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.MiniDFSCluster.DataNodeProperties;
import org.apache.hadoop.hdfs.protocol.DatanodeID;
import org.apache.hadoop.hdfs.server.datanode.DataNode;
import org.apache.hadoop.hdfs.server.namenode.FSNamesystem;
import org.apache.hadoop.hdfs.server.namenode.NameNode;

/**
 * A single-process HDFS (one NameNode, N DataNodes) for fletch's integration tests,
 * built on Hadoop's {@link MiniDFSCluster}, plus a tiny HTTP control server so that
 * test scripts can stop/start DataNodes and the NameNode to inject failures.
 *
 * <p>Everything binds to 127.0.0.1. Authentication is SIMPLE and permissions are off,
 * which is what the native (Rust) hdfs-native client expects on an insecure cluster:
 * it always negotiates SASL and falls back to SIMPLE, and it talks to DataNodes on the
 * IP address and transfer port the NameNode reports for them.
 *
 * <p>Control API (all answers are JSON):
 * <pre>
 *   GET  /status             namenode up?, safemode, datanodes running / live / dead
 *   POST /datanodes/stop     stop every running DataNode (restartable, same ports)
 *   POST /datanodes/start    restart the stopped DataNodes and wait until registered
 *   POST /namenode/stop      stop the NameNode (RPC port closes)
 *   POST /namenode/start     start it again on the same port, wait for it
 *   POST /namenode/restart   stop + start
 *   POST /shutdown           stop everything, remove the ready file, exit 0
 * </pre>
 */
public final class MiniDfsServer {

    private static final PrintStream LOG = System.err;
    private static final long WAIT_MS = 120_000;

    /** Command-line options; see {@link #usage()}. */
    static final class Options {
        int nnPort = 9000;
        int nnHttpPort = 9870;
        int dataNodes = 1;
        int controlPort = 9099;
        long blockSize = 16L * 1024 * 1024;
        Path baseDir = Paths.get("target", "minidfs-data");
        Path readyFile = null;
        Path confDir = null;
        boolean keepData = false;
    }

    private final Options opts;
    private final Object lock = new Object();
    private final AtomicBoolean stopping = new AtomicBoolean(false);
    private final List<DataNodeProperties> stoppedDataNodes = new ArrayList<>();
    private MiniDFSCluster cluster;
    private boolean nameNodeUp;
    private HttpServer http;

    private MiniDfsServer(Options opts) {
        this.opts = opts;
    }

    public static void main(String[] args) {
        Options opts;
        try {
            opts = parse(args);
        } catch (IllegalArgumentException e) {
            LOG.println("minidfs: " + e.getMessage());
            LOG.println(usage());
            System.exit(2);
            return;
        }
        MiniDfsServer server = new MiniDfsServer(opts);
        try {
            server.start();
        } catch (Throwable t) {
            LOG.println("minidfs: FAILED to start: " + t);
            t.printStackTrace(LOG);
            server.shutdown();
            System.exit(1);
        }
    }

    static String usage() {
        return "usage: MiniDfsServer [--nn-port 9000] [--nn-http-port 9870] [--datanodes 1]\n"
            + "         [--control-port 9099] [--block-size BYTES] [--base-dir DIR]\n"
            + "         [--ready-file FILE] [--conf-dir DIR] [--keep-data]";
    }

    static Options parse(String[] args) {
        Options o = new Options();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--keep-data")) {
                o.keepData = true;
                continue;
            }
            if (a.equals("-h") || a.equals("--help")) {
                throw new IllegalArgumentException("help requested");
            }
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException("missing value for " + a);
            }
            String v = args[++i];
            switch (a) {
                case "--nn-port": o.nnPort = parseInt(a, v); break;
                case "--nn-http-port": o.nnHttpPort = parseInt(a, v); break;
                case "--datanodes": o.dataNodes = parseInt(a, v); break;
                case "--control-port": o.controlPort = parseInt(a, v); break;
                case "--block-size": o.blockSize = Long.parseLong(v); break;
                case "--base-dir": o.baseDir = Paths.get(v); break;
                case "--ready-file": o.readyFile = Paths.get(v); break;
                case "--conf-dir": o.confDir = Paths.get(v); break;
                default: throw new IllegalArgumentException("unknown option " + a);
            }
        }
        if (o.dataNodes < 0) {
            throw new IllegalArgumentException("--datanodes must be >= 0");
        }
        if (o.blockSize < 512 || o.blockSize % 512 != 0) {
            throw new IllegalArgumentException("--block-size must be a positive multiple of 512");
        }
        return o;
    }

    private static int parseInt(String name, String v) {
        try {
            return Integer.parseInt(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(name + " expects a number, got '" + v + "'");
        }
    }

    private String url() {
        return "hdfs://127.0.0.1:" + opts.nnPort;
    }

    /** Hadoop settings for a small, fast, insecure single-host cluster. */
    private Configuration buildConf() throws IOException {
        Configuration conf = new HdfsConfiguration();
        Path base = opts.baseDir.toAbsolutePath();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, base.toString());
        conf.set("hadoop.tmp.dir", base.resolve("tmp").toString());
        // Insecure cluster: SIMPLE auth, no service-level authorization, no permission checks.
        conf.set("hadoop.security.authentication", "simple");
        conf.setBoolean("hadoop.security.authorization", false);
        conf.setBoolean("dfs.permissions.enabled", false);
        conf.setBoolean("dfs.block.access.token.enable", false);
        // Small blocks allowed (a client may ask for any multiple of 512 bytes).
        conf.setLong("dfs.blocksize", opts.blockSize);
        conf.setLong("dfs.namenode.fs-limits.min-block-size", 512);
        conf.setInt("dfs.replication", Math.max(1, Math.min(3, opts.dataNodes)));
        // Loopback only.
        conf.set("dfs.namenode.rpc-bind-host", "127.0.0.1");
        conf.set("dfs.namenode.http-bind-host", "127.0.0.1");
        conf.set("dfs.namenode.servicerpc-bind-host", "127.0.0.1");
        // Notice stopped DataNodes quickly (dead after 2*recheck + 10*heartbeat = ~14 s).
        conf.setLong("dfs.heartbeat.interval", 1);
        conf.setInt("dfs.namenode.heartbeat.recheck-interval", 2000);
        conf.setLong("dfs.namenode.stale.datanode.interval", 5000);
        // Safe mode: leave as soon as the reported blocks allow it.
        conf.setInt("dfs.namenode.safemode.extension", 0);
        conf.setInt("dfs.namenode.safemode.extension.testing", 0);
        // With one DataNode a Java writer must not try to replace a failed pipeline node.
        conf.setBoolean("dfs.client.block.write.replace-datanode-on-failure.enable",
            opts.dataNodes >= 3);
        return conf;
    }

    private void start() throws Exception {
        long t0 = System.nanoTime();
        if (opts.readyFile != null) {
            Files.deleteIfExists(opts.readyFile);
        }
        Runtime.getRuntime().addShutdownHook(new Thread(this::shutdown, "minidfs-shutdown"));

        // Bind the control port first: fail fast if another instance is running.
        http = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(),
            opts.controlPort), 16);
        http.setExecutor(Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "minidfs-control");
            t.setDaemon(true);
            return t;
        }));
        registerRoutes();

        boolean format = !(opts.keepData
            && Files.isRegularFile(opts.baseDir.resolve("name-0-1").resolve("current").resolve("VERSION")));
        Files.createDirectories(opts.baseDir);
        LOG.printf(Locale.ROOT, "minidfs: starting NameNode on 127.0.0.1:%d (http %d), %d DataNode(s), "
                + "block size %d, base dir %s, %s%n", opts.nnPort, opts.nnHttpPort, opts.dataNodes,
            opts.blockSize, opts.baseDir.toAbsolutePath(), format ? "formatting" : "keeping data");
        Configuration conf = buildConf();
        synchronized (lock) {
            cluster = new MiniDFSCluster.Builder(conf)
                .nameNodePort(opts.nnPort)
                .nameNodeHttpPort(opts.nnHttpPort)
                .numDataNodes(opts.dataNodes)
                .format(format)
                .checkExitOnShutdown(false)
                .build();
            cluster.waitActive();
            nameNodeUp = true;
        }
        http.start();

        if (opts.confDir != null) {
            writeClientConf(opts.confDir);
        }
        if (opts.readyFile != null) {
            writeAtomically(opts.readyFile, url() + "\n");
        }
        LOG.printf(Locale.ROOT, "minidfs: READY %s (control http://127.0.0.1:%d) in %.1f s%n", url(),
            opts.controlPort, (System.nanoTime() - t0) / 1e9);
        // The JVM stays alive through Hadoop's non-daemon threads; /shutdown or SIGTERM ends it.
    }

    /** core-site.xml / hdfs-site.xml for HADOOP_CONF_DIR (hdfs-native and Java clients). */
    private void writeClientConf(Path dir) throws IOException {
        Files.createDirectories(dir);
        String core = "<?xml version=\"1.0\"?>\n<configuration>\n"
            + prop("fs.defaultFS", url())
            + prop("hadoop.security.authentication", "simple")
            + "</configuration>\n";
        String hdfs = "<?xml version=\"1.0\"?>\n<configuration>\n"
            + prop("dfs.replication", Integer.toString(Math.max(1, Math.min(3, opts.dataNodes))))
            + prop("dfs.blocksize", Long.toString(opts.blockSize))
            + prop("dfs.client.block.write.replace-datanode-on-failure.enable",
                Boolean.toString(opts.dataNodes >= 3))
            + "</configuration>\n";
        writeAtomically(dir.resolve("core-site.xml"), core);
        writeAtomically(dir.resolve("hdfs-site.xml"), hdfs);
    }

    private static String prop(String name, String value) {
        return "  <property><name>" + name + "</name><value>" + value + "</value></property>\n";
    }

    private static void writeAtomically(Path target, String content) throws IOException {
        Path abs = target.toAbsolutePath();
        if (abs.getParent() != null) {
            Files.createDirectories(abs.getParent());
        }
        Path tmp = abs.resolveSibling(abs.getFileName() + ".tmp");
        Files.write(tmp, content.getBytes(StandardCharsets.UTF_8));
        Files.move(tmp, abs, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    // ---------------------------------------------------------------- control operations

    private interface Action {
        String run() throws Exception;
    }

    private void registerRoutes() {
        http.createContext("/", ex -> {
            try {
                reply(ex, 404, "{\"ok\":false,\"error\":\"not found\",\"endpoints\":[\"GET /status\","
                    + "\"POST /datanodes/stop\",\"POST /datanodes/start\",\"POST /namenode/stop\","
                    + "\"POST /namenode/start\",\"POST /namenode/restart\",\"POST /shutdown\"]}");
            } finally {
                ex.close();
            }
        });
        route("GET", "/status", this::status);
        route("POST", "/datanodes/stop", this::stopDataNodes);
        route("POST", "/datanodes/start", this::startDataNodes);
        route("POST", "/namenode/stop", this::stopNameNode);
        route("POST", "/namenode/start", this::startNameNode);
        route("POST", "/namenode/restart", () -> {
            boolean was = nameNodeUp;
            stopNameNode();
            startNameNode();
            return "{\"ok\":true,\"was_up\":" + was + ",\"restarted\":true,\"status\":" + status() + "}";
        });
        route("POST", "/shutdown", () -> {
            Thread t = new Thread(() -> {
                sleepQuietly(200); // let the answer reach the client
                shutdown();
                System.exit(0);
            }, "minidfs-exit");
            t.start();
            return "{\"ok\":true,\"shutting_down\":true}";
        });
    }

    private void route(String method, String path, Action action) {
        http.createContext(path, ex -> {
            try {
                if (!ex.getRequestURI().getPath().equals(path)) {
                    reply(ex, 404, "{\"ok\":false,\"error\":\"not found\"}");
                } else if (!ex.getRequestMethod().equalsIgnoreCase(method)
                    && !(method.equals("GET") && ex.getRequestMethod().equalsIgnoreCase("HEAD"))) {
                    ex.getResponseHeaders().set("Allow", method);
                    reply(ex, 405, "{\"ok\":false,\"error\":\"use " + method + " " + path + "\"}");
                } else {
                    String body;
                    synchronized (lock) {
                        if (stopping.get() && !path.equals("/status")) {
                            reply(ex, 503, "{\"ok\":false,\"error\":\"shutting down\"}");
                            return;
                        }
                        LOG.println("minidfs: control " + method + " " + path);
                        body = action.run();
                    }
                    reply(ex, 200, body);
                }
            } catch (Throwable t) {
                LOG.println("minidfs: control " + path + " failed: " + t);
                t.printStackTrace(LOG);
                reply(ex, 500, "{\"ok\":false,\"error\":" + json(String.valueOf(t)) + "}");
            } finally {
                ex.close();
            }
        });
    }

    private static void reply(HttpExchange ex, int code, String body) throws IOException {
        byte[] bytes = (body + "\n").getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        boolean head = ex.getRequestMethod().equalsIgnoreCase("HEAD");
        ex.sendResponseHeaders(code, head ? -1 : bytes.length);
        if (!head) {
            try (OutputStream os = ex.getResponseBody()) {
                os.write(bytes);
            }
        }
    }

    private String status() {
        StringBuilder sb = new StringBuilder(256);
        sb.append("{\"ok\":true,\"url\":").append(json(url()));
        sb.append(",\"namenode\":{\"up\":").append(nameNodeUp);
        sb.append(",\"rpc_port\":").append(opts.nnPort);
        sb.append(",\"http_port\":").append(opts.nnHttpPort);
        long live = -1;
        long dead = -1;
        boolean safemode = false;
        NameNode nn = nameNodeUp ? cluster.getNameNode(0) : null;
        if (nn != null) {
            FSNamesystem ns = nn.getNamesystem();
            live = ns.getNumLiveDataNodes();
            dead = ns.getNumDeadDataNodes();
            safemode = ns.isInSafeMode();
        }
        sb.append(",\"safemode\":").append(safemode).append('}');
        List<DataNode> running = cluster.getDataNodes();
        sb.append(",\"datanodes\":{\"configured\":").append(opts.dataNodes);
        sb.append(",\"running\":").append(running.size());
        sb.append(",\"stopped\":").append(stoppedDataNodes.size());
        sb.append(",\"alive\":").append(live);
        sb.append(",\"dead\":").append(dead);
        sb.append(",\"xfer_addresses\":[");
        for (int i = 0; i < running.size(); i++) {
            if (i > 0) {
                sb.append(',');
            }
            sb.append(json("127.0.0.1:" + running.get(i).getXferPort()));
        }
        sb.append("]}}");
        return sb.toString();
    }

    private String stopDataNodes() {
        int n = 0;
        while (!cluster.getDataNodes().isEmpty()) {
            int last = cluster.getDataNodes().size() - 1;
            DatanodeID id = cluster.getDataNodes().get(last).getDatanodeId();
            DataNodeProperties props = cluster.stopDataNode(last);
            if (props == null) {
                break;
            }
            stoppedDataNodes.add(0, props);
            n++;
            // Tell the NameNode right away instead of after the heartbeat expiry (~14 s),
            // so /status and block locations reflect the outage immediately.
            if (nameNodeUp) {
                try {
                    cluster.setDataNodeDead(id);
                } catch (IOException e) {
                    LOG.println("minidfs: could not mark DataNode dead: " + e);
                }
            }
        }
        LOG.println("minidfs: stopped " + n + " DataNode(s)");
        return "{\"ok\":true,\"stopped\":" + n + ",\"status\":" + status() + "}";
    }

    private String startDataNodes() throws Exception {
        int n = 0;
        while (!stoppedDataNodes.isEmpty()) {
            DataNodeProperties props = stoppedDataNodes.remove(0);
            if (!cluster.restartDataNode(props, true)) {
                throw new IOException("DataNode did not restart");
            }
            n++;
        }
        if (nameNodeUp) {
            waitForDataNodes();
        }
        LOG.println("minidfs: started " + n + " DataNode(s)");
        return "{\"ok\":true,\"started\":" + n + ",\"status\":" + status() + "}";
    }

    private String stopNameNode() {
        boolean was = nameNodeUp;
        if (was) {
            cluster.shutdownNameNode(0);
            nameNodeUp = false;
            LOG.println("minidfs: NameNode stopped");
        }
        return "{\"ok\":true,\"was_up\":" + was + ",\"status\":" + status() + "}";
    }

    private String startNameNode() throws Exception {
        boolean was = nameNodeUp;
        if (!was) {
            cluster.restartNameNode(0, false);
            nameNodeUp = true;
            waitForDataNodes();
            LOG.println("minidfs: NameNode started");
        }
        return "{\"ok\":true,\"was_up\":" + was + ",\"status\":" + status() + "}";
    }

    /** Wait until the NameNode sees every running DataNode and (if it can) left safe mode. */
    private void waitForDataNodes() throws Exception {
        long deadline = System.currentTimeMillis() + WAIT_MS;
        int want = cluster.getDataNodes().size();
        while (true) {
            NameNode nn = cluster.getNameNode(0);
            if (nn != null) {
                FSNamesystem ns = nn.getNamesystem();
                boolean registered = ns.getNumLiveDataNodes() >= want;
                boolean reported = true;
                for (DataNode dn : cluster.getDataNodes()) {
                    if (!dn.isDatanodeFullyStarted()) {
                        reported = false;
                    }
                }
                // With DataNodes down, blocks cannot be reported: do not wait for safe mode.
                boolean safeOk = !ns.isInSafeMode() || want < opts.dataNodes;
                if (registered && reported && safeOk) {
                    return;
                }
            }
            if (System.currentTimeMillis() > deadline) {
                throw new IOException("timed out waiting for " + want + " DataNode(s) to register");
            }
            sleepQuietly(100);
        }
    }

    private void shutdown() {
        if (!stopping.compareAndSet(false, true)) {
            return;
        }
        LOG.println("minidfs: shutting down");
        try {
            if (opts.readyFile != null) {
                Files.deleteIfExists(opts.readyFile);
            }
        } catch (IOException e) {
            LOG.println("minidfs: could not remove ready file: " + e);
        }
        synchronized (lock) {
            if (cluster != null) {
                try {
                    if (opts.keepData) {
                        // MiniDFSCluster.shutdown(false) still schedules the base dir for
                        // deletion at JVM exit; stopping the daemons directly keeps it.
                        cluster.shutdownDataNodes();
                        cluster.shutdownNameNodes();
                    } else {
                        cluster.shutdown(true);
                    }
                } catch (Throwable t) {
                    LOG.println("minidfs: error during cluster shutdown: " + t);
                }
                cluster = null;
            }
        }
        if (http != null) {
            http.stop(0);
        }
        LOG.println("minidfs: stopped");
    }

    private static void sleepQuietly(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static String json(String s) {
        StringBuilder sb = new StringBuilder(s.length() + 2).append('"');
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        sb.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
            }
        }
        return sb.append('"').toString();
    }
}
