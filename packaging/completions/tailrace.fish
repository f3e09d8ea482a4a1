# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tailrace_global_optspecs
    string join \n h/help V/version
end

function __fish_tailrace_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tailrace_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tailrace_using_subcommand
    set -l cmd (__fish_tailrace_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tailrace -n "__fish_tailrace_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tailrace -n "__fish_tailrace_needs_command" -s V -l version -d 'Print version'
complete -c tailrace -n "__fish_tailrace_needs_command" -f -a "run" -d 'Run the agent until SIGTERM: tail, parse, aggregate, ship, checkpoint'
complete -c tailrace -n "__fish_tailrace_needs_command" -f -a "check" -d 'Validate a config file (and that its formats compile); report every problem'
complete -c tailrace -n "__fish_tailrace_needs_command" -f -a "status" -d 'Show, per flow and file, what is acknowledged, the file\'s size and the lag'
complete -c tailrace -n "__fish_tailrace_needs_command" -f -a "parse" -d 'Parse lines from FILE (or stdin) and print one JSON object per line'
complete -c tailrace -n "__fish_tailrace_needs_command" -f -a "replay" -d 'Ship the given files once, start to end, through the same pipeline as `run`'
complete -c tailrace -n "__fish_tailrace_needs_command" -f -a "schema" -d 'Print the JSON Schema of the config file (for editors and CI checks)'
complete -c tailrace -n "__fish_tailrace_needs_command" -f -a "import-kinesis-agent" -d 'Print the tailrace config equivalent to a Kinesis Agent agent.json'
complete -c tailrace -n "__fish_tailrace_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c tailrace -n "__fish_tailrace_needs_command" -f -a "man" -d 'Print the man page (roff)'
complete -c tailrace -n "__fish_tailrace_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tailrace -n "__fish_tailrace_using_subcommand run" -s c -l config -d 'The YAML config file' -r -F
complete -c tailrace -n "__fish_tailrace_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tailrace -n "__fish_tailrace_using_subcommand check" -s c -l config -d 'The YAML config file' -r -F
complete -c tailrace -n "__fish_tailrace_using_subcommand check" -l user -d 'The service user the files are checked for (with --live; default: tailrace when it exists and check runs as root, else the user running check)' -r
complete -c tailrace -n "__fish_tailrace_using_subcommand check" -l live -d 'Also check AWS, the state directory and the files, as the agent would meet them'
complete -c tailrace -n "__fish_tailrace_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tailrace -n "__fish_tailrace_using_subcommand status" -s c -l config -d 'The YAML config file' -r -F
complete -c tailrace -n "__fish_tailrace_using_subcommand status" -l json -d 'Print JSON instead of a table'
complete -c tailrace -n "__fish_tailrace_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tailrace -n "__fish_tailrace_using_subcommand parse" -s f -l format -d 'A preset (common, combined, vhost_combined) or an Apache LogFormat string' -r
complete -c tailrace -n "__fish_tailrace_using_subcommand parse" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tailrace -n "__fish_tailrace_using_subcommand replay" -s c -l config -d 'The YAML config file' -r -F
complete -c tailrace -n "__fish_tailrace_using_subcommand replay" -l flow -d 'The flow whose settings to use (needed when the config has several)' -r
complete -c tailrace -n "__fish_tailrace_using_subcommand replay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tailrace -n "__fish_tailrace_using_subcommand schema" -s h -l help -d 'Print help'
complete -c tailrace -n "__fish_tailrace_using_subcommand import-kinesis-agent" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tailrace -n "__fish_tailrace_using_subcommand completions" -s h -l help -d 'Print help'
complete -c tailrace -n "__fish_tailrace_using_subcommand man" -s h -l help -d 'Print help'
complete -c tailrace -n "__fish_tailrace_using_subcommand help; and not __fish_seen_subcommand_from run check status parse replay schema import-kinesis-agent completions man help" -f -a "run" -d 'Run the agent until SIGTERM: tail, parse, aggregate, ship, checkpoint'
complete -c tailrace -n "__fish_tailrace_using_subcommand help; and not __fish_seen_subcommand_from run check status parse replay schema import-kinesis-agent completions man help" -f -a "check" -d 'Validate a config file (and that its formats compile); report every problem'
complete -c tailrace -n "__fish_tailrace_using_subcommand help; and not __fish_seen_subcommand_from run check status parse replay schema import-kinesis-agent completions man help" -f -a "status" -d 'Show, per flow and file, what is acknowledged, the file\'s size and the lag'
complete -c tailrace -n "__fish_tailrace_using_subcommand help; and not __fish_seen_subcommand_from run check status parse replay schema import-kinesis-agent completions man help" -f -a "parse" -d 'Parse lines from FILE (or stdin) and print one JSON object per line'
complete -c tailrace -n "__fish_tailrace_using_subcommand help; and not __fish_seen_subcommand_from run check status parse replay schema import-kinesis-agent completions man help" -f -a "replay" -d 'Ship the given files once, start to end, through the same pipeline as `run`'
complete -c tailrace -n "__fish_tailrace_using_subcommand help; and not __fish_seen_subcommand_from run check status parse replay schema import-kinesis-agent completions man help" -f -a "schema" -d 'Print the JSON Schema of the config file (for editors and CI checks)'
complete -c tailrace -n "__fish_tailrace_using_subcommand help; and not __fish_seen_subcommand_from run check status parse replay schema import-kinesis-agent completions man help" -f -a "import-kinesis-agent" -d 'Print the tailrace config equivalent to a Kinesis Agent agent.json'
complete -c tailrace -n "__fish_tailrace_using_subcommand help; and not __fish_seen_subcommand_from run check status parse replay schema import-kinesis-agent completions man help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c tailrace -n "__fish_tailrace_using_subcommand help; and not __fish_seen_subcommand_from run check status parse replay schema import-kinesis-agent completions man help" -f -a "man" -d 'Print the man page (roff)'
complete -c tailrace -n "__fish_tailrace_using_subcommand help; and not __fish_seen_subcommand_from run check status parse replay schema import-kinesis-agent completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
