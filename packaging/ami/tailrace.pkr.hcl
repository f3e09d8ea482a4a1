# An AMI with the tailrace agent installed, configured and enabled.
#
#   packer build -var package=tailrace-0.1.0-1.x86_64.rpm tailrace.pkr.hcl
#   packer build -var arch=arm64 -var package=tailrace-0.1.0-1.aarch64.rpm tailrace.pkr.hcl
#   packer build -var base=ubuntu-24.04 -var package=tailrace_0.1.0-1_amd64.deb tailrace.pkr.hcl
#
# Per-instance settings (stream, service) arrive at boot: see
# packaging/README.md, "Per-instance settings". Written for packer >= 1.6.6
# (no required_plugins block: the amazon builder is built into 1.6.x; with
# packer >= 1.10 run `packer plugins install github.com/hashicorp/amazon` first).

variable "package" {
  type        = string
  description = "Path of the tailrace .rpm (Amazon Linux 2023) or .deb (Ubuntu) to install."
}

variable "arch" {
  type        = string
  default     = "x86_64"
  description = "x86_64 or arm64 (Graviton); must match the package."
}

variable "base" {
  type        = string
  default     = "al2023"
  description = "al2023 or ubuntu-24.04."
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "instance_type" {
  type        = string
  default     = ""
  description = "Build instance type; default t3.small (x86_64) or t4g.small (arm64)."
}

locals {
  timestamp = regex_replace(timestamp(), "[- TZ:]", "")
  ami_filters = {
    "al2023"       = "al2023-ami-2023.*-kernel-*-${var.arch}"
    "ubuntu-24.04" = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-${var.arch == "arm64" ? "arm64" : "amd64"}-server-*"
  }
  ami_owners = {
    "al2023"       = "137112412989"
    "ubuntu-24.04" = "099720109477"
  }
  ssh_users = {
    "al2023"       = "ec2-user"
    "ubuntu-24.04" = "ubuntu"
  }
  instance_type = var.instance_type != "" ? var.instance_type : (var.arch == "arm64" ? "t4g.small" : "t3.small")
}

source "amazon-ebs" "tailrace" {
  region        = var.region
  instance_type = local.instance_type
  ssh_username  = local.ssh_users[var.base]
  ami_name      = "tailrace-${var.base}-${var.arch}-${local.timestamp}"
  source_ami_filter {
    filters = {
      name                = local.ami_filters[var.base]
      architecture        = var.arch
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = [local.ami_owners[var.base]]
    most_recent = true
  }
  # (packer >= 1.7 can add: metadata_options { http_tokens = "required" };
  # 1.6.6 does not know the block. AL2023 AMIs default to IMDSv2 anyway.)
  tags = {
    Name      = "tailrace-${var.base}-${var.arch}"
    BaseAMI   = "{{ .SourceAMI }}"
    Component = "tailrace"
  }
}

build {
  sources = ["source.amazon-ebs.tailrace"]

  provisioner "file" {
    source      = var.package
    destination = "/tmp/tailrace-package"
  }

  provisioner "file" {
    source      = "${path.root}/files/"
    destination = "/tmp/"
  }

  provisioner "shell" {
    execute_command = "sudo sh -eux '{{ .Path }}'"
    script          = "${path.root}/install.sh"
  }
}
