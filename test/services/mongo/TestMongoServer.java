// The suite's MongoDB-compatible server: mongo-java-server's in-memory backend with the
// oplog enabled (change streams are served from it), bound to one address and port.
//
// Usage: java -cp 'lib/*:classes' TestMongoServer <host> <port> <wireVersion> <version>
//
// mongo-java-server reports maxWireVersion 8 ("5.0.0") by default, and mongodb driver 7.x
// refuses servers below wire version 9 (MongoDB 4.4). The backend takes any MongoVersion,
// so the version reported in isMaster (maxWireVersion) and buildInfo is the one given here;
// test/services/mongo.mjs passes the lowest one the installed driver accepts.
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

public final class TestMongoServer {

    private TestMongoServer() {
    }

    /** A server version of our choosing: what the driver's handshake and buildInfo see. */
    private static MongoVersion reported(int wireVersion, String version) {
        List<Integer> parts = new ArrayList<>();
        for (String part : version.split("\\.")) {
            parts.add(Integer.valueOf(part));
        }
        List<Integer> versionArray = Collections.unmodifiableList(parts);
        return new MongoVersion() {
            @Override
            public List<Integer> getVersionArray() {
                return versionArray;
            }

            @Override
            public int getWireVersion() {
                return wireVersion;
            }
        };
    }

    public static void main(String[] args) throws InterruptedException {
        if (args.length != 4) {
            System.err.println("usage: TestMongoServer <host> <port> <wireVersion> <version>");
            System.exit(2);
        }
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        int wireVersion = Integer.parseInt(args[2]);
        String version = args[3];

        MemoryBackend backend = new MemoryBackend();
        backend.version(reported(wireVersion, version));
        MongoServer server = new MongoServer(backend);
        server.enableOplog();
        server.bind(host, port);
        Runtime.getRuntime().addShutdownHook(new Thread(server::shutdownNow, "test-mongo-shutdown"));
        System.out.println("TestMongoServer ready on " + host + ":" + port + " reporting version " + version
            + " (maxWireVersion " + wireVersion + "), oplog enabled");
        System.out.flush();
        Thread.currentThread().join();
    }
}
