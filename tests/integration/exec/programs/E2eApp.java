// E2eApp.java: the Java "local app" of the exec end-to-end tests (tests/integration/exec/), run
// as `java E2eApp.java` (source-file mode) under `mirrord exec` in the harness's laptop netns:
// the pod's env, a pod file (NIO), DNS (InetAddress), HTTP (HttpURLConnection) and a TCP echo
// (Socket) to the service by name. Prints `key=value` lines.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.HttpURLConnection;
import java.net.InetAddress;
import java.net.Socket;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;

public class E2eApp {
    public static void main(String[] args) throws Exception {
        System.out.println("env=" + System.getenv("MX_POD_ENV"));
        System.out.println("file=" + Files.readString(Path.of("/app/hello.txt")).trim());
        System.out.println("dns=" + InetAddress.getByName("echo").getHostAddress());
        HttpURLConnection c = (HttpURLConnection) new URL("http://echo/hello.txt").openConnection();
        c.setConnectTimeout(5000);
        c.setReadTimeout(5000);
        System.out.println("http=" + new String(c.getInputStream().readAllBytes()).trim());
        try (Socket s = new Socket("echo", 7)) {
            s.setSoTimeout(5000);
            s.getOutputStream().write("java echo\n".getBytes());
            String line = new BufferedReader(new InputStreamReader(s.getInputStream())).readLine();
            System.out.println("echo=" + line);
            System.out.println("peer=" + s.getInetAddress().getHostAddress());
        }
    }
}
