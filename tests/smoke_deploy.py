"""Deploys the parts of infra/template.yaml that the local AWS emulator supports.

The SAM template is transformed to plain CloudFormation with the same translator SAM
uses; the resources the emulator can create (buckets, streams, queues, roles) are kept,
the rest (the function, its event source mapping, its log group) are left out, and the
result is created as a CloudFormation stack on the emulator. Every kept resource is then
looked up through its own service. Exit status 0 means all of them exist.

Parameters keep their defaults unless `--parameter NAME=VALUE` sets them (the Source to
deploy, say); resources whose Condition is false for them are not expected.

Usage: smoke_deploy.py --endpoint http://127.0.0.1:PORT [--template infra/template.yaml]
                       [--parameter NAME=VALUE ...]
"""

import argparse
import ast
import json
import os
import re
import sys
import time
import urllib.parse

import boto3
from cfnlint.decode import decode
from samtranslator.translator.transform import transform

SUPPORTED = {
    "AWS::S3::Bucket", "AWS::Kinesis::Stream", "AWS::SQS::Queue", "AWS::IAM::Role", "AWS::DynamoDB::Table",
    "AWS::SNS::Topic", "AWS::CloudWatch::Dashboard",
}
# The emulator's CloudFormation reports alarms created without creating them: they are
# put through the CloudWatch API instead, their properties resolved against the stack.
THROUGH_THE_API = {"AWS::CloudWatch::Alarm"}


class NoManagedPolicies:
    """The translator asks for AWS managed policy ARNs by name; the template names none."""

    def load(self):
        return {}


def referenced(value):
    """Logical ids a template fragment refers to (Ref, GetAtt, Sub)."""
    found = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else inner.split(".")[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                for part in text.split("${")[1:]:
                    found.add(part.split("}")[0].split(".")[0])
                found |= referenced(inner)
            else:
                found |= referenced(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= referenced(inner)
    return found


def store_table(dynamodb, table):
    """The idempotency store's table is keyed by `id` (the emulator's CloudFormation
    leaves TTL off: the template's own declaration is checked in `main`)."""
    keys = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
    if keys != [{"AttributeName": "id", "KeyType": "HASH"}]:
        sys.exit(f"table {table}: the key is not `id`: {keys}")


def resolve(value, env):
    """`value` with the intrinsic functions alarms use (Ref, GetAtt, Sub) replaced."""
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            return env[argument]
        if function == "Fn::GetAtt":
            return env[".".join(argument) if isinstance(argument, list) else argument]
        if function == "Fn::Sub" and isinstance(argument, str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(env[m.group(1)]), argument)
    if isinstance(value, dict):
        return {k: resolve(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, env) for v in value]
    return value


def holds(condition, parameters, conditions):
    """Whether a template condition holds for these parameter values (the functions
    conditions use: Equals, Not, And, Or, Condition, Ref, Select, Split)."""
    if isinstance(condition, dict) and len(condition) == 1:
        ((function, argument),) = condition.items()
        if function == "Ref":
            return parameters[argument]
        if function == "Condition":
            return holds(conditions[argument], parameters, conditions)
        if function == "Fn::Equals":
            left, right = (holds(a, parameters, conditions) for a in argument)
            return str(left) == str(right)
        if function == "Fn::Not":
            return not holds(argument[0], parameters, conditions)
        if function == "Fn::Split":
            separator, text = argument
            return str(holds(text, parameters, conditions)).split(separator)
        if function == "Fn::Select":
            index, items = argument
            return holds(items, parameters, conditions)[int(index)]
        if function == "Fn::And":
            return all(holds(a, parameters, conditions) for a in argument)
        if function == "Fn::Or":
            return any(holds(a, parameters, conditions) for a in argument)
    return condition


NO_VALUE = object()


def choose(value, parameters, conditions):
    """`value` with each Fn::If decided and AWS::NoValue taken out, as CloudFormation
    does (the emulator leaves a None in a role's policies for a NoValue)."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, then, otherwise = value["Fn::If"]
            picked = then if holds(conditions[name], parameters, conditions) else otherwise
            return choose(picked, parameters, conditions)
        if value == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        chosen = {k: choose(v, parameters, conditions) for k, v in value.items()}
        return {k: v for k, v in chosen.items() if v is not NO_VALUE}
    if isinstance(value, list):
        chosen = [choose(v, parameters, conditions) for v in value]
        return [v for v in chosen if v is not NO_VALUE]
    return value


def alarm(cloudwatch, name):
    """The alarm exists and notifies someone."""
    alarms = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    if not alarms or not alarms[0].get("AlarmActions"):
        sys.exit(f"alarm {name}: missing, or without an action: {alarms}")


def declares_ttl(template):
    """Every DynamoDB table of the template expires its items by `ttl`."""
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        ttl = resource["Properties"].get("TimeToLiveSpecification", {})
        if ttl != {"AttributeName": "ttl", "Enabled": True}:
            sys.exit(f"table {name}: TTL is not on `ttl`: {ttl}")
        print(f"table {name}: TTL on `ttl`")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--template", default="infra/template.yaml")
    parser.add_argument("--parameter", action="append", default=[], help="NAME=VALUE")
    args = parser.parse_args()
    overrides = dict(p.split("=", 1) for p in args.parameter)

    # The translator resolves pseudo parameters from the default session's region.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template, problems = decode(args.template)
    if problems:
        sys.exit(f"cannot read {args.template}: {problems}")
    # What `sam package` does: the function's local code becomes an S3 location.
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://packaged-code/host.zip"
    declares_ttl(template)
    plain = transform(template, {}, NoManagedPolicies())
    values = {k: v.get("Default", "") for k, v in plain.get("Parameters", {}).items()}
    values.update(overrides)
    conditions = plain.get("Conditions", {})
    off = {
        k for k, v in plain["Resources"].items()
        if "Condition" in v and not holds(conditions[v["Condition"]], values, conditions)
    }
    plain["Resources"] = {
        k: choose(v, values, conditions) for k, v in plain["Resources"].items() if k not in off
    }
    resources = {k: v for k, v in plain["Resources"].items() if v["Type"] in SUPPORTED}
    alarms = {k: v for k, v in plain["Resources"].items() if v["Type"] in THROUGH_THE_API}
    dropped = sorted(set(plain["Resources"]) - set(resources) - set(alarms))
    # A kept resource must not depend on a dropped one.
    for name, resource in resources.items():
        missing = referenced(resource) & set(dropped)
        if missing:
            sys.exit(f"{name} refers to resources the emulator cannot create: {sorted(missing)}")
    # What a kept resource waits for but the emulator cannot create (a queue policy).
    for resource in resources.values():
        waits = resource.get("DependsOn")
        if waits is not None:
            waits = [waits] if isinstance(waits, str) else waits
            resource["DependsOn"] = [w for w in waits if w in resources]
    plain["Resources"] = resources
    plain.pop("Outputs", None)
    plain.pop("Rules", None)
    used = referenced(resources) | referenced(plain.get("Conditions", {}))
    plain["Parameters"] = {k: v for k, v in plain.get("Parameters", {}).items() if k in used}

    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    client = lambda service: session.client(service, endpoint_url=args.endpoint)
    cloudformation = client("cloudformation")
    cloudformation.create_stack(
        StackName="pipeline-host",
        TemplateBody=json.dumps(plain),
        Parameters=[
            {"ParameterKey": k, "ParameterValue": v} for k, v in overrides.items() if k in plain["Parameters"]
        ],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    for _ in range(100):
        stack = cloudformation.describe_stacks(StackName="pipeline-host")["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS"):
            break
        time.sleep(0.1)
    status = stack["StackStatus"]
    print(f"stack status: {status}")
    if status != "CREATE_COMPLETE":
        events = cloudformation.describe_stack_events(StackName="pipeline-host")["StackEvents"]
        for event in events:
            print(f"  {event['LogicalResourceId']}: {event['ResourceStatus']} {event.get('ResourceStatusReason', '')}")
        sys.exit(1)

    created = cloudformation.describe_stack_resources(StackName="pipeline-host")["StackResources"]
    checks = {
        "AWS::S3::Bucket": lambda id: client("s3").head_bucket(Bucket=id),
        "AWS::Kinesis::Stream": lambda id: client("kinesis").describe_stream_summary(StreamName=id),
        "AWS::SQS::Queue": lambda id: client("sqs").get_queue_attributes(QueueUrl=id, AttributeNames=["QueueArn"]),
        "AWS::IAM::Role": lambda id: client("iam").get_role(RoleName=id),
        "AWS::DynamoDB::Table": lambda id: store_table(client("dynamodb"), id),
        "AWS::SNS::Topic": lambda id: client("sns").get_topic_attributes(TopicArn=id),
        "AWS::CloudWatch::Alarm": lambda id: alarm(client("cloudwatch"), id),
        "AWS::CloudWatch::Dashboard": lambda id: client("cloudwatch").get_dashboard(DashboardName=id),
    }
    # The emulator describes some resources (alarms) without their logical id: those
    # are checked by the names the template gives them.
    named = [r for r in created if "LogicalResourceId" in r]
    for resource in sorted(named, key=lambda r: r["LogicalResourceId"]):
        checks[resource["ResourceType"]](resource["PhysicalResourceId"])
        print(f"created {resource['ResourceType']} {resource['LogicalResourceId']}")
    env = {"AWS::StackName": "pipeline-host", "AWS::Region": "us-east-1"}
    for name, parameter in plain.get("Parameters", {}).items():
        env[name] = overrides.get(name, parameter.get("Default", ""))
    for r in named:
        env[r["LogicalResourceId"]] = r["PhysicalResourceId"]
        if r["ResourceType"] == "AWS::SQS::Queue":
            env[r["LogicalResourceId"] + ".QueueName"] = r["PhysicalResourceId"].rsplit("/", 1)[-1]
    cloudwatch = client("cloudwatch")
    for logical, resource in sorted(alarms.items()):
        properties = resolve(resource["Properties"], env)
        cloudwatch.put_metric_alarm(**properties)
        alarm(cloudwatch, properties["AlarmName"])
        print(f"created AWS::CloudWatch::Alarm {logical}")
    iam = client("iam")
    for resource in created:
        if resource["ResourceType"] != "AWS::IAM::Role":
            continue
        role = resource["PhysicalResourceId"]
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            if isinstance(document, str):  # the emulator returns it as text (JSON or a Python literal)
                text = urllib.parse.unquote(document)
                try:
                    document = json.loads(text)
                except json.JSONDecodeError:
                    document = ast.literal_eval(text)
            for statement in document["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if statement.get("Sid"):
                    targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                    print(f"grant {statement['Sid']}: {' '.join(actions)} on {' '.join(targets)}")
                wide = [a for a in actions if a == "*" or a.endswith(":*")]
                if wide:
                    sys.exit(f"role {role} policy {name} grants wildcard actions {wide}")
        print(f"role {role}: no wildcard actions")
    print(f"left out (not supported by the emulator): {', '.join(dropped)}")
    print(f"left out (their Condition is false): {', '.join(sorted(off))}")
    if len(created) != len(resources):
        sys.exit(f"{len(resources)} resources in the template, {len(created)} created")


if __name__ == "__main__":
    main()
