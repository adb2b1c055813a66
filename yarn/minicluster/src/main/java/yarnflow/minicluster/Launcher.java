package yarnflow.minicluster;

import java.io.BufferedReader;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.yarn.api.records.NodeState;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.MiniYARNCluster;
import org.apache.zookeeper.server.ServerCnxnFactory;
import org.apache.zookeeper.server.ZooKeeperServer;

/**
 * Starts, in this JVM and on loopback, a MiniDFSCluster (1 NameNode with WebHDFS, 1 DataNode),
 * a MiniYARNCluster (1 ResourceManager, N NodeManagers) and a ZooKeeper server, then writes
 * DIR/conf/*-site.xml and DIR/cluster.env. Driven by yarn/minicluster/run; not meant to be
 * started by hand.
 *
 * <p>Args: DIR NUM_NODEMANAGERS WATCH_PID [key=value ...]. The cluster stops when this JVM gets
 * SIGTERM, when WATCH_PID (if not 0) dies, or on the control port's "shutdown". The control port
 * (loopback, one command per connection) also takes "zk-stop", "zk-start" and "status", so tests
 * can restart ZooKeeper while client sessions survive.
 */
public final class Launcher {
  private final Path dir;
  private final int numNodeManagers;
  private MiniDFSCluster dfs;
  private MiniYARNCluster yarn;
  private ZooKeeperServer zk;
  private ServerCnxnFactory zkFactory;
  private int zkPort;
  private volatile boolean stopping;

  private Launcher(Path dir, int numNodeManagers) {
    this.dir = dir;
    this.numNodeManagers = numNodeManagers;
  }

  public static void main(String[] args) throws Exception {
    Path dir = Path.of(args[0]).toAbsolutePath();
    int nms = Integer.parseInt(args[1]);
    long watchPid = Long.parseLong(args[2]);
    Map<String, String> overrides = new TreeMap<>();
    for (int i = 3; i < args.length; i++) {
      int eq = args[i].indexOf('=');
      if (eq <= 0) {
        throw new IllegalArgumentException("override must be key=value: " + args[i]);
      }
      overrides.put(args[i].substring(0, eq), args[i].substring(eq + 1));
    }
    Launcher l = new Launcher(dir, nms);
    // Stop explicitly, then halt: Hadoop's own shutdown hooks would race ours.
    sun.misc.Signal.handle(new sun.misc.Signal("TERM"), s -> l.exit(0));
    sun.misc.Signal.handle(new sun.misc.Signal("INT"), s -> l.exit(0));
    long t0 = System.nanoTime();
    try {
      l.start(overrides);
    } catch (Throwable e) {
      System.err.println("minicluster failed to start: " + e);
      e.printStackTrace();
      l.exit(1);
    }
    System.out.printf("Ready! (%d ms)%n", (System.nanoTime() - t0) / 1_000_000);
    System.out.flush();
    if (watchPid > 0) {
      Thread w = new Thread(() -> l.watch(watchPid), "minicluster-watch-pid");
      w.setDaemon(true);
      w.start();
    }
    l.serveControl();
  }

  /** Exits (running the shutdown hook) once the process that owns this cluster is gone. */
  private void watch(long pid) {
    while (ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
      try {
        Thread.sleep(500);
      } catch (InterruptedException e) {
        return;
      }
    }
    System.out.println("owner process " + pid + " is gone; stopping");
    exit(0);
  }

  private void start(Map<String, String> overrides) throws Exception {
    Files.createDirectories(dir.resolve("conf"));
    startZooKeeper(freePort());

    Configuration conf = new YarnConfiguration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, dir.resolve("dfs").toString());
    conf.setBoolean("dfs.webhdfs.enabled", true);
    conf.setInt("dfs.replication", 1);
    conf.set("dfs.namenode.rpc-address", "127.0.0.1:0");
    conf.set("hadoop.http.staticuser.user", System.getProperty("user.name"));
    // Test-tuned YARN: fast heartbeats, small containers, many fit on a 2-core host.
    conf.setInt(YarnConfiguration.RM_AM_MAX_ATTEMPTS, 4);
    conf.setInt(YarnConfiguration.RM_NM_HEARTBEAT_INTERVAL_MS, 100);
    conf.setFloat(
        YarnConfiguration.NM_MAX_PER_DISK_UTILIZATION_PERCENTAGE, 100.0f);
    conf.setInt(YarnConfiguration.DEBUG_NM_DELETE_DELAY_SEC, 3600);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MINIMUM_ALLOCATION_MB, 128);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_MB, 8192);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_VCORES, 64);
    conf.setInt(YarnConfiguration.NM_PMEM_MB, 8192);
    conf.setInt("yarn.minicluster.yarn.nodemanager.resource.memory-mb", 8192);
    conf.setInt(YarnConfiguration.NM_VCORES, 64);
    conf.setBoolean(YarnConfiguration.LOG_AGGREGATION_ENABLED, false);
    conf.setLong(YarnConfiguration.NM_LOG_RETAIN_SECONDS, 86400);
    conf.setFloat("yarn.scheduler.capacity.maximum-am-resource-percent", 1.0f);
    conf.setInt(YarnConfiguration.RM_AM_EXPIRY_INTERVAL_MS, 20000);
    conf.setBoolean(YarnConfiguration.NM_PMEM_CHECK_ENABLED, false);
    conf.setBoolean(YarnConfiguration.NM_VMEM_CHECK_ENABLED, false);
    conf.set(YarnConfiguration.RM_HOSTNAME, "127.0.0.1");
    for (Map.Entry<String, String> e : overrides.entrySet()) {
      conf.set(e.getKey(), e.getValue());
    }

    dfs = new MiniDFSCluster.Builder(conf)
        .numDataNodes(1)
        .nameNodePort(0)
        .nameNodeHttpPort(0)
        .checkDataNodeHostConfig(true)
        .build();
    dfs.waitActive();
    while (dfs.getNameNode().isInSafeMode()) {
      Thread.sleep(50);
    }
    String hdfsUri = "hdfs://127.0.0.1:" + dfs.getNameNodePort();
    conf.set("fs.defaultFS", hdfsUri);

    yarn = new MiniYARNCluster("yarnflow", numNodeManagers, 1, 1);
    yarn.init(conf);
    yarn.start();
    if (!yarn.waitForNodeManagersToConnect(60_000)) {
      throw new IllegalStateException("NodeManagers did not connect within 60 s");
    }
    Configuration yc = yarn.getConfig();
    while (yc.get(YarnConfiguration.RM_ADDRESS, "").endsWith(":0")) {
      Thread.sleep(50);
    }
    waitForRunningNodes();

    writeSiteFiles(yc, hdfsUri);
    String rmRest = "http://" + yc.get(YarnConfiguration.RM_WEBAPP_ADDRESS);
    String webhdfs = "http://" + hostPort(dfs.getNameNode().getHttpAddress()) + "/webhdfs/v1";
    Map<String, String> env = new TreeMap<>();
    env.put("HADOOP_CONF_DIR", dir.resolve("conf").toString());
    env.put("YARN_RM_REST", rmRest);
    env.put("YARN_RM_SCHEDULER", yc.get(YarnConfiguration.RM_SCHEDULER_ADDRESS));
    env.put("YARN_RM_ADDRESS", yc.get(YarnConfiguration.RM_ADDRESS));
    env.put("HDFS_URI", hdfsUri);
    env.put("WEBHDFS", webhdfs);
    env.put("ZK_QUORUM", "127.0.0.1:" + zkPort);
    env.put("JAVA_HOME", System.getProperty("java.home"));
    env.put("MINICLUSTER_DIR", dir.toString());
    env.put("MINICLUSTER_NODEMANAGERS", Integer.toString(numNodeManagers));
    // Filled in by the run script (classpath and control port are known there / below).
    env.put("MINICLUSTER_CONTROL", "127.0.0.1:" + control.getLocalPort());
    env.put("HADOOP_VERSION", org.apache.hadoop.util.VersionInfo.getVersion());
    env.put("ZOOKEEPER_VERSION", org.apache.zookeeper.Version.getFullVersion());
    writeEnv(env);
  }

  private final ServerSocket control = openControl();

  private static ServerSocket openControl() {
    try {
      return new ServerSocket(0, 16, java.net.InetAddress.getLoopbackAddress());
    } catch (IOException e) {
      throw new IllegalStateException("cannot open the control port", e);
    }
  }

  private void waitForRunningNodes() throws InterruptedException {
    long deadline = System.currentTimeMillis() + 60_000;
    while (System.currentTimeMillis() < deadline) {
      long running = yarn.getResourceManager().getRMContext().getRMNodes().values().stream()
          .filter(n -> n.getState() == NodeState.RUNNING).count();
      if (running >= numNodeManagers) {
        return;
      }
      Thread.sleep(50);
    }
    throw new IllegalStateException("NodeManagers not RUNNING within 60 s");
  }

  private void startZooKeeper(int port) throws Exception {
    File data = dir.resolve("zk").toFile();
    data.mkdirs();
    zk = new ZooKeeperServer(data, data, 500);
    // Short sessions must be allowed (expiry tests); long ones are Flink's default of 60 s.
    zk.setMinSessionTimeout(1000);
    zk.setMaxSessionTimeout(60000);
    zkFactory = ServerCnxnFactory.createFactory(new InetSocketAddress("127.0.0.1", port), 0);
    zkFactory.startup(zk);
    zkPort = port;
  }

  private synchronized String zkStop() {
    if (zkFactory == null) {
      return "zookeeper already stopped";
    }
    zkFactory.shutdown();
    zk.shutdown();
    zkFactory = null;
    zk = null;
    return "zookeeper stopped";
  }

  private synchronized String zkStart() throws Exception {
    if (zkFactory != null) {
      return "zookeeper already running";
    }
    startZooKeeper(zkPort);
    return "zookeeper started on 127.0.0.1:" + zkPort;
  }

  private void serveControl() throws Exception {
    while (!stopping) {
      try (Socket s = control.accept();
          BufferedReader in = new BufferedReader(
              new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
          PrintWriter out = new PrintWriter(s.getOutputStream(), true, StandardCharsets.UTF_8)) {
        String cmd = String.valueOf(in.readLine()).trim();
        try {
          switch (cmd) {
            case "zk-stop" -> out.println(zkStop());
            case "zk-start" -> out.println(zkStart());
            case "status" -> out.println(status());
            case "shutdown" -> {
              out.println("stopping");
              out.flush();
              exit(0);
            }
            default -> out.println("unknown command: " + cmd);
          }
        } catch (Exception e) {
          out.println("error: " + e);
        }
      } catch (IOException e) {
        if (!stopping) {
          System.err.println("control connection failed: " + e);
        }
      }
    }
  }

  private synchronized String status() {
    StringBuilder b = new StringBuilder();
    b.append("hdfs=").append(dfs != null && dfs.isClusterUp() ? "up" : "down");
    long running = yarn == null ? 0 : yarn.getResourceManager().getRMContext().getRMNodes()
        .values().stream().filter(n -> n.getState() == NodeState.RUNNING).count();
    b.append(" nodemanagers-running=").append(running).append('/').append(numNodeManagers);
    b.append(" zookeeper=").append(zk != null && zk.isRunning() ? "up" : "down");
    return b.toString();
  }

  /** Stops everything this JVM started, then halts (no JVM shutdown hooks run). */
  private void exit(int code) {
    try {
      stop();
    } catch (Throwable e) {
      System.err.println("stopping: " + e);
    }
    System.out.flush();
    Runtime.getRuntime().halt(code);
  }

  private synchronized void stop() {
    stopping = true;
    try {
      control.close();
    } catch (IOException ignored) {
      // closing anyway
    }
    // YARN first: stopping the NodeManagers kills the containers they launched.
    if (yarn != null) {
      try {
        yarn.stop();
      } catch (Exception e) {
        System.err.println("stopping YARN: " + e);
      }
    }
    if (dfs != null) {
      dfs.shutdown();
    }
    zkStop();
  }

  private void writeSiteFiles(Configuration all, String hdfsUri) throws IOException {
    Configuration core = new Configuration(false);
    Configuration hdfs = new Configuration(false);
    Configuration yarnSite = new Configuration(false);
    core.set("fs.defaultFS", hdfsUri);
    core.set("hadoop.security.authentication", "simple");
    for (Map.Entry<String, String> e : all) {
      String k = e.getKey();
      String v = all.get(k);
      if (k.startsWith("yarn.")) {
        yarnSite.set(k, v);
      } else if (k.startsWith("dfs.")) {
        hdfs.set(k, v);
      }
    }
    hdfs.set("dfs.namenode.rpc-address", hdfsUri.substring("hdfs://".length()));
    hdfs.set("dfs.namenode.http-address", hostPort(dfs.getNameNode().getHttpAddress()));
    writeXml(core, "core-site.xml");
    writeXml(hdfs, "hdfs-site.xml");
    writeXml(yarnSite, "yarn-site.xml");
  }

  private void writeXml(Configuration c, String name) throws IOException {
    Path tmp = dir.resolve("conf").resolve(name + ".tmp");
    try (OutputStream o = new FileOutputStream(tmp.toFile())) {
      c.writeXml(o);
    }
    Files.move(tmp, dir.resolve("conf").resolve(name), StandardCopyOption.REPLACE_EXISTING,
        StandardCopyOption.ATOMIC_MOVE);
  }

  /** cluster.env appears atomically: the run script treats its existence as "ready". */
  private void writeEnv(Map<String, String> env) throws IOException {
    List<String> lines = new ArrayList<>();
    for (Map.Entry<String, String> e : env.entrySet()) {
      lines.add("export " + e.getKey() + "='" + e.getValue().replace("'", "'\\''") + "'");
    }
    Path tmp = dir.resolve("cluster.env.part");
    Files.write(tmp, lines, StandardCharsets.UTF_8);
    Files.move(tmp, dir.resolve("cluster.env.java"), StandardCopyOption.REPLACE_EXISTING,
        StandardCopyOption.ATOMIC_MOVE);
  }

  private static String hostPort(InetSocketAddress a) {
    return a.getHostString() + ":" + a.getPort();
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }
}
