#!/usr/bin/env python3
"""The minimal, strictly sequential walk of the data Palisade harvests (the harvest bench's
baseline).

Usage:
    python3 walk.py --endpoint http://127.0.0.1:PORT --regions us-east-1,eu-west-1

Makes, one after another with one boto3 client per (service, region), exactly the calls a
minimal harvest of Palisade's resource types needs, with Palisade's page sizes:

- STS GetCallerIdentity, once.
- Per region: EC2 DescribeInstances / DescribeSecurityGroups / DescribeVolumes /
  DescribeVpcs (MaxResults 1000, every NextToken); RDS DescribeDBInstances (MaxRecords 100,
  every Marker); KMS ListAliases (Limit 100) and ListKeys (Limit 1000), DescribeKey per key
  and GetKeyRotationStatus per enabled customer key; CloudTrail DescribeTrails
  (includeShadowTrails, which shows the region's own trails and those visible from it).
- GetTrailStatus once per distinct trail, in its home region (it serves both the trail
  resource and the account resource's trail summary).
- S3 ListBuckets, then per bucket GetBucketLocation (us-east-1 client), GetBucketAcl,
  GetBucketEncryption, GetPublicAccessBlock, GetBucketPolicyStatus, GetBucketVersioning
  (client of the bucket's region).
- IAM ListUsers (MaxItems 1000, every Marker), then per user ListMFADevices,
  GetLoginProfile, ListAccessKeys.

botocore's own retries are off; a 5xx or throttling answer is retried here and counted.
Every HTTP attempt is counted (a botocore `before-send` hook). Prints ONE JSON object:

    {"calls": n, "seconds": s, "resources": n, "retries": n,
     "per_type": {"aws.ec2.volume": n, ...}, "per_service": {"iam": n, ...}}

`seconds` covers the calls only (clients are made before the clock starts).
"""

import argparse
import json
import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

RETRYABLE = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "SlowDown",
             "TooManyRequestsException", "InternalError", "ServiceUnavailable"}


class Walk:
    def __init__(self, endpoint, regions):
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        self.endpoint = endpoint
        self.regions = regions
        self.config = Config(retries={"total_max_attempts": 1, "mode": "legacy"})
        self.clients = {}
        self.calls = 0
        self.retries = 0
        self.per_service = {}
        self.per_type = {}
        services = ["ec2", "rds", "kms", "cloudtrail", "s3"]
        for region in regions:
            for service in services:
                self.client(service, region)
        self.client("s3", "us-east-1")
        self.client("iam", "us-east-1")
        self.client("sts", "us-east-1")

    def client(self, service, region):
        key = (service, region)
        if key not in self.clients:
            c = boto3.client(service, region_name=region, endpoint_url=self.endpoint,
                             config=self.config)
            c.meta.events.register("before-send", self.count(service))
            self.clients[key] = c
        return self.clients[key]

    def count(self, service):
        def hook(**_):
            self.calls += 1
            self.per_service[service] = self.per_service.get(service, 0) + 1
        return hook

    def call(self, service, region, op, **params):
        """One API call; retried (and counted) on 5xx and throttling only."""
        method = getattr(self.client(service, region), op)
        for attempt in range(8):
            try:
                return method(**params)
            except ClientError as e:
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                code = e.response.get("Error", {}).get("Code", "")
                if (status >= 500 or code in RETRYABLE) and attempt < 7:
                    self.retries += 1
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise
        raise RuntimeError("unreachable")

    def optional(self, service, region, op, **params):
        """A detail call whose "not found" answer means "not configured"."""
        try:
            return self.call(service, region, op, **params)
        except ClientError:
            return None

    def add(self, rtype, n):
        self.per_type[rtype] = self.per_type.get(rtype, 0) + n

    def pages(self, service, region, op, params, token_in, token_out, done=None):
        """Every page of a paged call: `token_out` of each answer feeds `token_in`."""
        token = None
        while True:
            p = dict(params)
            if token:
                p[token_in] = token
            page = self.call(service, region, op, **p)
            yield page
            token = page.get(token_out)
            if not token or (done is not None and done(page)):
                return

    # ------------------------------------------------------------------ the walk

    def run(self):
        self.call("sts", "us-east-1", "get_caller_identity")
        self.add("aws.account", 1)
        trails = {}
        for region in self.regions:
            self.ec2(region)
            self.rds(region)
            self.kms(region)
            for t in self.call("cloudtrail", region, "describe_trails",
                               includeShadowTrails=True)["trailList"]:
                trails.setdefault(t["TrailARN"], t)
        homed = 0
        for arn, t in trails.items():
            self.call("cloudtrail", t["HomeRegion"], "get_trail_status", Name=arn)
            homed += t["HomeRegion"] in self.regions
        self.add("aws.cloudtrail.trail", homed)
        self.s3()
        self.iam()

    def ec2(self, region):
        for op, key, rtype in (
            ("describe_instances", "Reservations", "aws.ec2.instance"),
            ("describe_security_groups", "SecurityGroups", "aws.ec2.security-group"),
            ("describe_volumes", "Volumes", "aws.ec2.volume"),
            ("describe_vpcs", "Vpcs", "aws.ec2.vpc"),
        ):
            for page in self.pages("ec2", region, op, {"MaxResults": 1000},
                                   "NextToken", "NextToken"):
                items = page.get(key, [])
                if key == "Reservations":
                    self.add(rtype, sum(len(r.get("Instances", [])) for r in items))
                else:
                    self.add(rtype, len(items))

    def rds(self, region):
        for page in self.pages("rds", region, "describe_db_instances", {"MaxRecords": 100},
                               "Marker", "Marker"):
            self.add("aws.rds.db-instance", len(page.get("DBInstances", [])))

    def kms(self, region):
        truncated = lambda page: not page.get("Truncated")  # noqa: E731
        for _ in self.pages("kms", region, "list_aliases", {"Limit": 100},
                            "Marker", "NextMarker", truncated):
            pass
        for page in self.pages("kms", region, "list_keys", {"Limit": 1000},
                               "Marker", "NextMarker", truncated):
            for key in page.get("Keys", []):
                try:
                    meta = self.call("kms", region, "describe_key",
                                     KeyId=key["KeyId"])["KeyMetadata"]
                except ClientError:
                    continue
                self.add("aws.kms.key", 1)
                if meta.get("KeyManager") == "CUSTOMER" and meta.get("KeyState") == "Enabled":
                    self.optional("kms", region, "get_key_rotation_status", KeyId=key["KeyId"])

    def s3(self):
        answer = self.call("s3", "us-east-1", "list_buckets")
        for b in answer.get("Buckets", []):
            name = b["Name"]
            loc = self.call("s3", "us-east-1", "get_bucket_location", Bucket=name)
            region = loc.get("LocationConstraint") or "us-east-1"
            if region == "EU":
                region = "eu-west-1"
            self.call("s3", region, "get_bucket_acl", Bucket=name)
            self.optional("s3", region, "get_bucket_encryption", Bucket=name)
            self.optional("s3", region, "get_public_access_block", Bucket=name)
            self.optional("s3", region, "get_bucket_policy_status", Bucket=name)
            self.call("s3", region, "get_bucket_versioning", Bucket=name)
            self.add("aws.s3.bucket", 1)

    def iam(self):
        for page in self.pages("iam", "us-east-1", "list_users", {"MaxItems": 1000},
                               "Marker", "Marker", lambda p: not p.get("IsTruncated")):
            for user in page.get("Users", []):
                name = user["UserName"]
                self.call("iam", "us-east-1", "list_mfa_devices", UserName=name)
                self.optional("iam", "us-east-1", "get_login_profile", UserName=name)
                self.call("iam", "us-east-1", "list_access_keys", UserName=name)
                self.add("aws.iam.user", 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--regions", default="us-east-1,eu-west-1")
    args = parser.parse_args()
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    walk = Walk(args.endpoint, regions)
    started = time.perf_counter()
    walk.run()
    seconds = time.perf_counter() - started
    json.dump({
        "calls": walk.calls,
        "seconds": round(seconds, 3),
        "resources": sum(walk.per_type.values()),
        "retries": walk.retries,
        "per_type": dict(sorted(walk.per_type.items())),
        "per_service": dict(sorted(walk.per_service.items())),
    }, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
