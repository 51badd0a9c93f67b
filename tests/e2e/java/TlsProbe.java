// A Java TLS client as a Java service would be one: it takes its keystore and truststore from
// the standard javax.net.ssl.* system properties, verifies the server's certificate and host
// name, presents its own certificate when the server asks, sends one HTTP request and prints
// the status line. Exit 0 only for an HTTP 200 answer.
//
//   java -Djavax.net.ssl.keyStore=... -Djavax.net.ssl.keyStorePassword=... \
//        -Djavax.net.ssl.trustStore=... -Djavax.net.ssl.trustStorePassword=... \
//        -cp DIR TlsProbe HOST PORT
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.security.cert.X509Certificate;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.SSLSocketFactory;

public final class TlsProbe {
    public static void main(String[] args) {
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        SSLSocketFactory factory = (SSLSocketFactory) SSLSocketFactory.getDefault();
        try (SSLSocket socket = (SSLSocket) factory.createSocket(host, port)) {
            socket.setSoTimeout(15000);
            SSLParameters params = socket.getSSLParameters();
            params.setEndpointIdentificationAlgorithm("HTTPS");
            socket.setSSLParameters(params);
            socket.startHandshake();
            X509Certificate peer = (X509Certificate) socket.getSession().getPeerCertificates()[0];
            System.out.println("server: " + peer.getSubjectX500Principal().getName());
            OutputStream out = socket.getOutputStream();
            out.write("GET / HTTP/1.0\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
            out.flush();
            BufferedReader in = new BufferedReader(
                new InputStreamReader(socket.getInputStream(), StandardCharsets.US_ASCII));
            String status = in.readLine();
            System.out.println("response: " + status);
            System.exit(status != null && status.contains(" 200 ") ? 0 : 2);
        } catch (Exception e) {
            System.out.println("error: " + e);
            System.exit(1);
        }
    }
}
