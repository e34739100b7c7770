package careplan.fhir;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

/**
 * Validates FHIR R4 JSON resources with HAPI FHIR's instance validator, offline (R4 core
 * definitions from hapi-fhir-validation-resources-r4; no terminology server).
 *
 * <pre>java -cp ... careplan.fhir.Validate FILE_OR_DIR...</pre>
 *
 * A directory stands for every *.json file below it. Prints one JSON document on stdout:
 * {"files": {"&lt;path&gt;": {"messages": [{"severity", "location", "message"}]}}}, severity one of
 * fatal|error|warning|information. Exit 0 whatever the resources contain (the caller decides
 * what counts); 2 when the tool itself cannot run (bad arguments, unreadable file, crash).
 * The validator takes ~10 s to load and ~10 ms a resource: give it many files at once.
 */
public final class Validate {
  private Validate() {}

  public static void main(String[] args) {
    // Only the JSON result goes to stdout: anything a library prints goes to stderr.
    PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
    System.setOut(System.err);
    try {
      List<Path> files = collect(args);
      out.print(validate(files));
      out.println();
      out.flush();
      System.exit(out.checkError() ? 2 : 0);
    } catch (UsageException e) {
      System.err.println("Validate: " + e.getMessage());
      System.exit(2);
    } catch (Throwable e) {
      e.printStackTrace();
      System.exit(2);
    }
  }

  private static final class UsageException extends Exception {
    UsageException(String message) {
      super(message);
    }
  }

  private static List<Path> collect(String[] args) throws UsageException, IOException {
    if (args.length == 0) {
      throw new UsageException("usage: Validate FILE_OR_DIRECTORY... (FHIR R4 JSON resources)");
    }
    List<Path> files = new ArrayList<>();
    for (String arg : args) {
      Path path = Path.of(arg);
      if (Files.isDirectory(path)) {
        try (Stream<Path> found = Files.walk(path)) {
          found.filter(p -> Files.isRegularFile(p) && p.toString().endsWith(".json"))
              .sorted()
              .forEach(files::add);
        }
      } else if (Files.isRegularFile(path) && Files.isReadable(path)) {
        files.add(path);
      } else {
        throw new UsageException("not a readable file or directory: " + arg);
      }
    }
    return files;
  }

  private static FhirValidator newValidator(FhirContext context) {
    // The chain answers every question from the classpath: core profiles (Default...),
    // value sets/code systems shipped with R4 (InMemory...), the code systems HAPI knows
    // without a server (languages, MIME types, UCUM, currencies: CommonCodeSystems...), and
    // snapshots for any differential-only profile (SnapshotGenerating...).
    ValidationSupportChain chain = new ValidationSupportChain(
        new DefaultProfileValidationSupport(context),
        new InMemoryTerminologyServerValidationSupport(context),
        new CommonCodeSystemsTerminologyService(context),
        new SnapshotGeneratingValidationSupport(context));
    FhirValidator validator = context.newValidator();
    validator.registerValidatorModule(new FhirInstanceValidator(chain));
    return validator;
  }

  private static String validate(List<Path> files) throws IOException {
    FhirContext context = FhirContext.forR4();
    FhirValidator validator = newValidator(context);
    StringBuilder json = new StringBuilder("{\"files\": {");
    String separator = "";
    for (Path file : files) {
      String text = Files.readString(file, StandardCharsets.UTF_8);
      json.append(separator).append('\n');
      separator = ",";
      string(json, file.toString()).append(": {\"messages\": [");
      String messageSeparator = "";
      for (String[] message : messages(validator, text)) {
        json.append(messageSeparator).append("\n  {\"severity\": ");
        string(json, message[0]).append(", \"location\": ");
        string(json, message[1]).append(", \"message\": ");
        string(json, message[2]).append('}');
        messageSeparator = ",";
      }
      json.append("]}");
    }
    return json.append("\n}}").toString();
  }

  /** {severity, location, message} for each finding; a resource the validator cannot even
   * read (not JSON, no resourceType) is a fatal finding of that file, not a tool failure. */
  private static List<String[]> messages(FhirValidator validator, String text) {
    List<String[]> found = new ArrayList<>();
    ValidationResult result;
    try {
      result = validator.validateWithResult(text);
    } catch (RuntimeException e) {
      found.add(new String[] {"fatal", "", "validator could not read the resource: " + e});
      return found;
    }
    for (SingleValidationMessage m : result.getMessages()) {
      String severity = m.getSeverity() == null ? "error" : m.getSeverity().getCode();
      String location = m.getLocationString() == null ? "" : m.getLocationString();
      found.add(new String[] {severity, location, m.getMessage() == null ? "" : m.getMessage()});
    }
    return found;
  }

  private static StringBuilder string(StringBuilder json, String value) {
    json.append('"');
    for (int i = 0; i < value.length(); i++) {
      char c = value.charAt(i);
      switch (c) {
        case '"' -> json.append("\\\"");
        case '\\' -> json.append("\\\\");
        case '\n' -> json.append("\\n");
        case '\r' -> json.append("\\r");
        case '\t' -> json.append("\\t");
        default -> {
          if (c < 0x20) {
            json.append(String.format("\\u%04x", (int) c));
          } else {
            json.append(c);
          }
        }
      }
    }
    return json.append('"');
  }
}
