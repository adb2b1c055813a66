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
import org.apache.hadoop.hdfs.server.blockmanagement.DatanodeDescriptor;
import org.apache.hadoop.hdfs.server.datanode.DataNode;
import org.apache.hadoop.hdfs.server.namenode.FSNamesystem;
import org.apache.hadoop.hdfs.server.namenode.NameNode;
import org.apache.hadoop.yarn.api.records.NodeState;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.MiniYARNCluster;
import org.apache.zookeeper.server.ServerCnxnFactory;
import org.apache.zookeeper.server.ZooKeeperServer;

/**
 * Starts, in this JVM and on loopback, a MiniDFSCluster (1 NameNode with WebHDFS, M DataNodes),
 * a MiniYARNCluster (1 ResourceManager, N NodeManagers) and a ZooKeeper server, then writes
 * DIR/conf/*-site.xml and DIR/cluster.env. Driven by yarn/minicluster/run; not meant to be
 * started by hand.
 *
 * <p>Args: DIR NUM_NODEMANAGERS NUM_DATANODES WATCH_PID [key=value ...]. The cluster stops when
 * this JVM gets SIGTERM, when WATCH_PID (if not 0) dies, or on the control port's "shutdown". The
 * control port (loopback, one command per connection, each on its own thread so "status" answers
 * while a fault is in progress) also takes the fault commands "zk-stop", "zk-start",
 * "nn-restart TIMEOUT_S", "dn-stop INDEX", "dn-start INDEX TIMEOUT_S", and "status". A reply
 * starting with "error: " is a failure.
 */
public final class Launcher {
  private final Path dir;
  private final int numNodeManagers;
  private final int numDataNodes;
  private MiniDFSCluster dfs;
  /** DataNode INDEX as given to `up` (0..M-1), stable across stop/start (MiniDFSCluster's own
   * list is reordered by a restart). Guarded by hdfsLock. */
  private DnSlot[] dnSlots = new DnSlot[0];
  private volatile int dataNodesRunning;
  private volatile boolean nameNodeRestarting;
  /** Serializes the HDFS fault commands (ZooKeeper's are serialized on this). */
  private final Object hdfsLock = new Object();
  private MiniYARNCluster yarn;
  private volatile ZooKeeperServer zk;
  private ServerCnxnFactory zkFactory;
  private int zkPort;
  private volatile boolean stopping;

  /** One DataNode: running (live) or stopped (props kept for a restart on the same ports). */
  private static final class DnSlot {
    DataNode live;
    MiniDFSCluster.DataNodeProperties stopped;
    final String xferAddr;

    DnSlot(DataNode live) {
      this.live = live;
      this.xferAddr = ipPort(live.getXferAddress());
    }
  }

  private Launcher(Path dir, int numNodeManagers, int numDataNodes) {
    this.dir = dir;
    this.numNodeManagers = numNodeManagers;
    this.numDataNodes = numDataNodes;
  }

  public static void main(String[] args) throws Exception {
    Path dir = Path.of(args[0]).toAbsolutePath();
    int nms = Integer.parseInt(args[1]);
    int dns = Integer.parseInt(args[2]);
    long watchPid = Long.parseLong(args[3]);
    Map<String, String> overrides = new TreeMap<>();
    for (int i = 4; i < args.length; i++) {
      int eq = args[i].indexOf('=');
      if (eq <= 0) {
        throw new IllegalArgumentException("override must be key=value: " + args[i]);
      }
      overrides.put(args[i].substring(0, eq), args[i].substring(eq + 1));
    }
    Launcher l = new Launcher(dir, nms, dns);
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
    // Replication 2 once there are 2 DataNodes: stopping one then degrades HDFS, not stops it.
    conf.setInt("dfs.replication", Math.min(numDataNodes, 2));
    // DataNodes heartbeat every second (Hadoop: 3 s): after a NameNode restart they register and
    // send their block reports on heartbeats, so `nn restart` takes about 3 s instead of 8 s.
    conf.setInt("dfs.heartbeat.interval", 1);
    // Re-replicate fast once a stopped DataNode is back (`dn start` waits for it): Hadoop checks
    // every 3 s and has each DataNode copy 2 blocks at a time, 4 blocks per check in all.
    conf.setInt("dfs.namenode.redundancy.interval.seconds", 1);
    conf.setInt("dfs.namenode.replication.work.multiplier.per.iteration", 50);
    conf.setInt("dfs.namenode.replication.max-streams", 20);
    conf.setInt("dfs.namenode.replication.max-streams-hard-limit", 40);
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
        .numDataNodes(numDataNodes)
        .nameNodePort(0)
        .nameNodeHttpPort(0)
        .checkDataNodeHostConfig(true)
        .build();
    dfs.waitActive();
    while (dfs.getNameNode().isInSafeMode()) {
      Thread.sleep(50);
    }
    List<DataNode> started = dfs.getDataNodes();
    dnSlots = new DnSlot[started.size()];
    for (int i = 0; i < dnSlots.length; i++) {
      dnSlots[i] = new DnSlot(started.get(i));
    }
    dataNodesRunning = dnSlots.length;
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
    env.put("MINICLUSTER_DATANODES", Integer.toString(numDataNodes));
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

  private void serveControl() {
    while (!stopping) {
      Socket s;
      try {
        s = control.accept();
      } catch (IOException e) {
        if (!stopping) {
          System.err.println("control port failed: " + e);
        }
        continue;
      }
      Thread t = new Thread(() -> handle(s), "minicluster-control");
      t.setDaemon(true);
      t.start();
    }
  }

  private void handle(Socket socket) {
    try (Socket s = socket;
        BufferedReader in = new BufferedReader(
            new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
        PrintWriter out = new PrintWriter(s.getOutputStream(), true, StandardCharsets.UTF_8)) {
      String line = String.valueOf(in.readLine()).trim();
      String[] cmd = line.split("\\s+");
      try {
        switch (cmd[0]) {
          case "zk-stop" -> out.println(zkStop());
          case "zk-start" -> out.println(zkStart());
          case "nn-restart" -> out.println(nameNodeRestart(intArg(cmd, 1, "timeout")));
          case "dn-stop" -> out.println(dataNodeStop(intArg(cmd, 1, "index")));
          case "dn-start" -> out.println(
              dataNodeStart(intArg(cmd, 1, "index"), intArg(cmd, 2, "timeout")));
          case "status" -> out.println(status());
          case "shutdown" -> {
            out.println("stopping");
            out.flush();
            exit(0);
          }
          default -> out.println("error: unknown control command: " + line);
        }
      } catch (Exception e) {
        System.err.println("control command '" + line + "' failed: " + e);
        e.printStackTrace();
        String msg = e instanceof FaultException ? e.getMessage() : e.toString();
        out.println("error: " + msg.replaceAll("\\s*\\n\\s*", " "));
      }
    } catch (IOException e) {
      if (!stopping) {
        System.err.println("control connection failed: " + e);
      }
    }
  }

  /** A fault command that cannot be done; its message is the whole reply. */
  private static final class FaultException extends Exception {
    FaultException(String msg) {
      super(msg);
    }
  }

  private static int intArg(String[] cmd, int i, String what) throws FaultException {
    try {
      return Integer.parseInt(cmd[i]);
    } catch (ArrayIndexOutOfBoundsException | NumberFormatException e) {
      throw new FaultException(cmd[0] + ": expected an integer " + what + " as argument " + i);
    }
  }

  /**
   * MiniDFSCluster.restartNameNode on the same name directories (no format) and the same RPC and
   * HTTP ports, so clients reconnect; returns once the NameNode is active, out of safe mode and
   * every running DataNode has registered again and sent its full block report (safe mode
   * ends with one replica of each block, so with replication 2 one DataNode's report is
   * enough: stopping it right after would leave blocks the NameNode cannot locate).
   */
  private String nameNodeRestart(int timeoutS) throws Exception {
    synchronized (hdfsLock) {
      NameNode before = dfs.getNameNode();
      String rpc = ipPort(before.getNameNodeAddress());
      String http = ipPort(before.getHttpAddress());
      long t0 = System.nanoTime();
      long deadline = t0 + timeoutS * 1_000_000_000L;
      nameNodeRestarting = true;
      try {
        dfs.restartNameNode(0, false);
        NameNode nn = dfs.getNameNode();
        String rpcNow = ipPort(nn.getNameNodeAddress());
        String httpNow = ipPort(nn.getHttpAddress());
        if (!rpcNow.equals(rpc) || !httpNow.equals(http)) {
          throw new FaultException("nn restart: the NameNode came back on RPC " + rpcNow
              + " / HTTP " + httpNow + ", not " + rpc + " / " + http);
        }
        long sinceMillis = System.currentTimeMillis() - (System.nanoTime() - t0) / 1_000_000;
        List<String> unreported = new ArrayList<>();
        while (System.nanoTime() < deadline) {
          unreported = unreported(sinceMillis);
          if (nn.isActiveState() && !nn.isInSafeMode() && unreported.isEmpty()) {
            return String.format(
                "namenode restarted on %s, HTTP %s (%d/%d DataNodes reported, %d ms)", rpc, http,
                dataNodesRunning, numDataNodes, (System.nanoTime() - t0) / 1_000_000);
          }
          Thread.sleep(100);
        }
        String why = nn.isInSafeMode()
            ? "is still in safe mode (" + nn.getNamesystem().getSafemode().trim() + ")"
            : !nn.isActiveState() ? "is not active"
            : "has had no block report from DataNode " + String.join(", ", unreported);
        throw new FaultException("nn restart: the NameNode on " + rpc + " " + why
            + " after " + timeoutS + " s; log: " + dir.resolve("minicluster.log"));
      } finally {
        nameNodeRestarting = false;
      }
    }
  }

  private DnSlot slot(String verb, int index) throws FaultException {
    if (index < 0 || index >= dnSlots.length) {
      throw new FaultException(verb + ": no DataNode " + index + "; this cluster has "
          + dnSlots.length + " (indexes 0.." + (dnSlots.length - 1) + ", see up --datanodes)");
    }
    return dnSlots[index];
  }

  /**
   * MiniDFSCluster.stopDataNode, keeping its DataNodeProperties for `dn start`, then
   * MiniDFSCluster.setDataNodeDead so the NameNode stops using it at once.
   */
  private String dataNodeStop(int index) throws FaultException {
    synchronized (hdfsLock) {
      DnSlot slot = slot("dn stop", index);
      if (slot.live == null) {
        return "datanode " + index + " (" + slot.xferAddr + ") already stopped";
      }
      long t0 = System.nanoTime();
      int i = dfs.getDataNodes().indexOf(slot.live);
      if (i < 0) {
        throw new FaultException("dn stop: DataNode " + index + " (" + slot.xferAddr
            + ") is not in the MiniDFSCluster's list");
      }
      slot.stopped = dfs.stopDataNode(i);
      slot.live = null;
      dataNodesRunning--;
      // What the NameNode would conclude itself after dfs.namenode.heartbeat.recheck-interval
      // (10.5 min by default): it stops naming this DataNode to clients (block locations,
      // WebHDFS redirects, new pipelines) and counts its replicas as lost.
      try {
        dfs.setDataNodeDead(slot.stopped.getDatanode().getDatanodeId());
      } catch (IOException e) {
        throw new FaultException("dn stop: DataNode " + index + " (" + slot.xferAddr
            + ") stopped, but the NameNode could not be told it is dead: " + e);
      }
      return String.format("datanode %d (%s) stopped (%d/%d DataNodes running, %d ms)", index,
          slot.xferAddr, dataNodesRunning, numDataNodes, (System.nanoTime() - t0) / 1_000_000);
    }
  }

  /**
   * MiniDFSCluster.restartDataNode(props, keepPort=true); returns once the DataNode has
   * registered with the NameNode and sent it a heartbeat and its full block report.
   */
  private String dataNodeStart(int index, int timeoutS) throws Exception {
    synchronized (hdfsLock) {
      DnSlot slot = slot("dn start", index);
      if (slot.live != null) {
        return "datanode " + index + " (" + slot.xferAddr + ") already running";
      }
      long t0 = System.nanoTime();
      long since = System.currentTimeMillis();
      long deadline = t0 + timeoutS * 1_000_000_000L;
      dfs.restartDataNode(slot.stopped, true);
      List<DataNode> all = dfs.getDataNodes();
      DataNode dn = all.get(all.size() - 1); // restartDataNode appends
      if (!ipPort(dn.getXferAddress()).equals(slot.xferAddr)) {
        throw new FaultException("dn start: DataNode " + index + " came back on "
            + ipPort(dn.getXferAddress()) + ", not " + slot.xferAddr);
      }
      slot.live = dn;
      slot.stopped = null;
      dataNodesRunning++;
      while (!reported(dn, since)) {
        if (System.nanoTime() > deadline) {
          throw new FaultException("dn start: DataNode " + index + " (" + slot.xferAddr
              + ") started but not registered and reported to the NameNode after " + timeoutS
              + " s; log: " + dir.resolve("minicluster.log"));
        }
        Thread.sleep(100);
      }
      long reportedMs = (System.nanoTime() - t0) / 1_000_000;
      // With every DataNode back, also wait for the re-replication of the blocks written while
      // this one was away: only then can any one DataNode stop again without a block going
      // missing (the chaos run stops them in turn). Blocks that cannot get more replicas (a
      // file's replication above the DataNodes; a writer may ask for more) end the wait once
      // the count of under-replicated blocks has not reached a new low for 3 s.
      FSNamesystem ns = dfs.getNameNode().getNamesystem();
      long low = ns.getLowRedundancyBlocks();
      if (dataNodesRunning == numDataNodes) {
        long best = Long.MAX_VALUE;
        long lastProgress = System.nanoTime();
        while (true) {
          low = ns.getLowRedundancyBlocks();
          long pending = ns.getPendingReconstructionBlocks();
          if (low + pending == 0) {
            break;
          }
          if (low < best) {
            best = low;
            lastProgress = System.nanoTime();
          } else if (System.nanoTime() - lastProgress > 3_000_000_000L
              || System.nanoTime() > deadline) {
            break;
          }
          Thread.sleep(100);
        }
      }
      return String.format(
          "datanode %d (%s) started (%d/%d DataNodes running, reported in %d ms, %s)", index,
          slot.xferAddr, dataNodesRunning, numDataNodes, reportedMs,
          low == 0
              ? "all blocks fully replicated in " + (System.nanoTime() - t0) / 1_000_000 + " ms"
              : low + " block(s) under-replicated"
                  + (dataNodesRunning == numDataNodes ? ", not re-replicating" : ""));
    }
  }

  /** The running DataNodes the NameNode has not yet had a registration, a heartbeat since
   * sinceMillis and a full block report from (as "INDEX (ADDR)"). */
  private List<String> unreported(long sinceMillis) {
    List<String> out = new ArrayList<>();
    for (int i = 0; i < dnSlots.length; i++) {
      if (dnSlots[i].live != null && !reported(dnSlots[i].live, sinceMillis)) {
        out.add(i + " (" + dnSlots[i].xferAddr + ")");
      }
    }
    return out;
  }

  /**
   * The DataNode is registered with the NameNode, which has had a heartbeat from it since
   * sinceMillis and its full block report since that registration (a registration resets the
   * count), so it knows the replicas on it: stopping another DataNode right after loses none.
   */
  private boolean reported(DataNode dn, long sinceMillis) {
    if (!dn.isDatanodeFullyStarted(true)) {
      return false;
    }
    DatanodeDescriptor d = dfs.getNameNode().getNamesystem().getBlockManager()
        .getDatanodeManager().getDatanode(dn.getDatanodeUuid());
    return d != null && d.isAlive() && d.getLastUpdate() >= sinceMillis
        && d.checkBlockReportReceived();
  }


  /** Reads no lock a fault command holds, so it answers while one runs. */
  private String status() {
    StringBuilder b = new StringBuilder();
    b.append("hdfs=").append(hdfsUp() ? "up" : "down");
    b.append(" datanodes-running=").append(dataNodesRunning).append('/').append(numDataNodes);
    b.append(" under-replicated=").append(underReplicated());
    long running = yarn == null ? 0 : yarn.getResourceManager().getRMContext().getRMNodes()
        .values().stream().filter(n -> n.getState() == NodeState.RUNNING).count();
    b.append(" nodemanagers-running=").append(running).append('/').append(numNodeManagers);
    ZooKeeperServer z = zk;
    b.append(" zookeeper=").append(z != null && z.isRunning() ? "up" : "down");
    return b.toString();
  }

  /** Blocks the NameNode counts as short of replicas, "?" while it is restarting. */
  private String underReplicated() {
    NameNode nn = dfs == null || nameNodeRestarting ? null : dfs.getNameNode();
    return nn == null ? "?" : Long.toString(nn.getNamesystem().getLowRedundancyBlocks());
  }

  /** The NameNode serves (active, out of safe mode) and at least one DataNode runs. */
  private boolean hdfsUp() {
    if (dfs == null || nameNodeRestarting || dataNodesRunning == 0) {
      return false;
    }
    NameNode nn = dfs.getNameNode();
    return nn != null && nn.isActiveState() && !nn.isInSafeMode();
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

  private static String ipPort(InetSocketAddress a) {
    return (a.getAddress() == null ? a.getHostString() : a.getAddress().getHostAddress()) + ":"
        + a.getPort();
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }
}
