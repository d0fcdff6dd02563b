// Conveyor's Kafka principals and ACLs, applied through Kafka's own Admin API (infra/kafka_access.py).
//
// Run in source-file mode with the broker's jars on the class path. Reads from stdin, one per line:
//   bootstrap <host:port,...>          where to connect
//   login <principal> <password>      who connects (a super user: SCRAM-SHA-512 over SASL_PLAINTEXT)
//   scram <principal> <password>      a principal's SCRAM-SHA-512 credential, created or replaced
//   acl <principal> <OPERATION> <TOPIC|GROUP|CLUSTER> <name|*>   an ALLOW rule
// The ACLs the broker holds become exactly the listed ones: missing ones are created, others deleted.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaAccess {
    public static void main(String[] args) throws Exception {
        Properties config = new Properties();
        List<UserScramCredentialAlteration> credentials = new ArrayList<>();
        Set<AclBinding> wanted = new HashSet<>();
        BufferedReader input = new BufferedReader(new InputStreamReader(System.in));
        for (String line; (line = input.readLine()) != null; ) {
            String[] word = line.trim().split(" ");
            switch (word[0]) {
                case "bootstrap" -> config.put("bootstrap.servers", word[1]);
                case "login" -> {
                    config.put("security.protocol", "SASL_PLAINTEXT");
                    config.put("sasl.mechanism", "SCRAM-SHA-512");
                    config.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule"
                            + " required username=\"" + word[1] + "\" password=\"" + word[2] + "\";");
                }
                case "scram" -> credentials.add(new UserScramCredentialUpsertion(
                        word[1], new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), word[2]));
                case "acl" -> wanted.add(new AclBinding(
                        new ResourcePattern(ResourceType.valueOf(word[3]), word[4], PatternType.LITERAL),
                        new AccessControlEntry("User:" + word[1], "*", AclOperation.valueOf(word[2]),
                                AclPermissionType.ALLOW)));
                case "" -> { }
                default -> throw new IllegalArgumentException("unknown line: " + word[0]);
            }
        }
        config.put("request.timeout.ms", "20000");
        try (Admin admin = Admin.create(config)) {
            if (!credentials.isEmpty()) {
                admin.alterUserScramCredentials(credentials).all().get(60, TimeUnit.SECONDS);
            }
            Set<AclBinding> held = new HashSet<>(admin.describeAcls(AclBindingFilter.ANY).values().get(60, TimeUnit.SECONDS));
            List<AclBindingFilter> stale = new ArrayList<>();
            for (AclBinding binding : held) {
                if (!wanted.contains(binding)) {
                    stale.add(binding.toFilter());
                }
            }
            if (!stale.isEmpty()) {
                admin.deleteAcls(stale).all().get(60, TimeUnit.SECONDS);
            }
            List<AclBinding> missing = new ArrayList<>(wanted);
            missing.removeAll(held);
            if (!missing.isEmpty()) {
                admin.createAcls(missing).all().get(60, TimeUnit.SECONDS);
            }
            System.out.println("credentials " + credentials.size() + ", acls created " + missing.size()
                    + ", deleted " + stale.size());
        }
    }
}
